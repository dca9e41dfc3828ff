"""keep_freed_memory(): freed large blocks are reused instead of being mapped afresh (glibc only)."""

import ctypes.util
import subprocess
import sys

import pytest

from ldmkit.fast.allocator import MMAP_THRESHOLD, keep_freed_memory

GLIBC = sys.platform.startswith("linux") and "libc.so.6" in (ctypes.util.find_library("c") or "")

# 40 rounds of allocating, touching and freeing a 48 MiB buffer: above glibc's largest dynamic mmap threshold
# (32 MiB), so by default each round maps (and faults in) fresh pages; below MMAP_THRESHOLD, so kept, they
# are reused. Prints the minor page faults of the loop.
CHURN = """
import resource, sys, torch
from ldmkit.fast.allocator import keep_freed_memory
if sys.argv[1] == "1":
    assert keep_freed_memory()
torch.ones(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    buffer = torch.empty(12 << 20)  # 48 MiB of float32
    buffer.fill_(1.0)
    del buffer
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(keep: bool) -> int:
    done = subprocess.run([sys.executable, "-c", CHURN, str(int(keep))], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc malloc's")
def test_freed_blocks_are_reused_instead_of_mapped_again():
    assert 48 << 20 < MMAP_THRESHOLD
    pages = (48 << 20) // 4096
    default, kept = _faults(False), _faults(True)
    assert default > 30 * pages  # every round faults its whole buffer in again
    assert kept < 10 * pages  # the first round (and the odd page the host's memory reclaim takes back)


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc malloc's")
def test_applied_once_and_reports_success():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # cached: no second mallopt round
    assert keep_freed_memory.cache_info().hits >= 1

"""Keep freed activation memory in the process instead of handing it back to the kernel (glibc malloc).

glibc serves large blocks from their own mappings and trims the heap top, with thresholds that start at
128 KiB and adapt to the order of earlier frees. Where they settle low, every training step or sampler
call maps the pages of its activations afresh and the kernel zeroes them again: one 400-step run of the
main job's LDM trainer took 105 s with 15.8 million minor page faults, the next 74 s with 0.3 million.
Fixed, high thresholds let freed blocks be reused from the heap in every run (73 s and 71 s, 0.2
million), with the same peak resident memory (docs/benchmarks.md, benchmarks/allocator.py).

Process-wide and applied once, by the fast layer's entry points (for_training, for_inference,
for_encoding) and the autoencoder trainer; other C libraries (musl, macOS, Windows) are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's <malloc.h>
MMAP_THRESHOLD = 64 << 20  # blocks above this still get their own mapping (whole weight tensors of large models)
TRIM_THRESHOLD = 1 << 30  # free heap top kept before trimming
TOP_PAD = 64 << 20  # extra heap grown at once


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's malloc thresholds as above; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(option, value) == 1 for option, value in settings)

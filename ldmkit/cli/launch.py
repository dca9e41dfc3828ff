"""`--processes N`: run a command in N processes on this machine (DDP), each one `python -m ldmkit ...`.

torchrun does the same and more (several machines, restarts), but when a process stops with ldmkit's
one-line error, torchrun adds its own traceback and failure report after it. Here each process
writes its error line to a file instead of stderr, and the launcher prints the line of the process
that failed first, once, with its exit code. Gloo on CPU; with CUDA each process takes GPU
LOCAL_RANK (ldmkit/training/distributed.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ERROR_DIR = "LDMKIT_ERROR_DIR"  # set in each launched process: where its error line goes (rank-<RANK>)
GRACE_SECONDS = 10.0  # how long the other processes get to end on their own after one has failed


def add_processes_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--processes", type=_positive_int, default=1, metavar="N",
                   help=f"{what} in N processes on this machine (DDP: gloo on CPU, one GPU each with CUDA); "
                        "for several machines use torchrun")


def wants_launch(args: argparse.Namespace) -> bool:
    """Whether this process should start the others: --processes N > 1, and not itself one of N."""
    processes = getattr(args, "processes", 1)
    if processes == 1 or ERROR_DIR in os.environ:
        return False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from ldmkit.errors import ConfigError

        raise ConfigError("--processes starts its own processes; under torchrun, drop --processes (torchrun's "
                          "--nproc_per_node sets their number)")
    return True


def report(line: str) -> None:
    """The one line a failed command prints: to stderr, or, in a launched process, to its error file."""
    folder = os.environ.get(ERROR_DIR)
    if folder:
        (Path(folder) / f"rank-{os.environ.get('RANK', '0')}").write_text(line)
    else:
        print(line, file=sys.stderr)


def launch(command: str, argv: list[str], processes: int) -> int:
    """Run `ldmkit *argv` in `processes` processes; their exit code (the first failure's), errors printed once."""
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    with tempfile.TemporaryDirectory(prefix="ldmkit-errors-") as errors:
        base = {**os.environ, ERROR_DIR: errors, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
                "WORLD_SIZE": str(processes), "LOCAL_WORLD_SIZE": str(processes)}
        base.setdefault("OMP_NUM_THREADS", threads)
        procs = [subprocess.Popen([sys.executable, "-m", "ldmkit", *argv], preexec_fn=_end_with_parent,
                                  env={**base, "RANK": str(rank), "LOCAL_RANK": str(rank)})
                 for rank in range(processes)]
        previous = signal.signal(signal.SIGTERM, _terminated)  # a stopped launcher stops its processes
        try:
            codes = _wait(procs)
        except (KeyboardInterrupt, _Terminated) as stop:  # Ctrl-C reached every process: let them end, say it once
            _stop(procs)
            print(f"ldmkit {command}: {'interrupted' if isinstance(stop, KeyboardInterrupt) else 'terminated'}",
                  file=sys.stderr)
            return 130 if isinstance(stop, KeyboardInterrupt) else 128 + signal.SIGTERM
        finally:
            signal.signal(signal.SIGTERM, previous)
        failed = [rank for rank, code in enumerate(codes) if code != 0]
        if not failed:
            return 0
        line = _root_cause(Path(errors), processes)
        first = failed[0]
        print(line or f"ldmkit {command}: error: process {first} of {processes} ended with exit code {codes[first]}; "
              "its output is above", file=sys.stderr)  # (no line: --debug's traceback is above)
        return codes[first] if codes[first] > 0 else 1


class _Terminated(Exception):
    """SIGTERM reached the launcher."""


def _terminated(*_) -> None:
    raise _Terminated


def _end_with_parent() -> None:
    """In each started process (Linux): SIGTERM when the launcher dies, even by SIGKILL, so that no process goes on
    training alone."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _wait(procs: list[subprocess.Popen]) -> list[int]:
    """Every process's exit code; once one has failed, the rest get GRACE_SECONDS and are then stopped (they may
    be waiting for it in a collective)."""
    failed_at = None
    while any(p.poll() is None for p in procs):
        if failed_at is None and any(p.returncode not in (None, 0) for p in procs):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > GRACE_SECONDS:
            _stop(procs)
        time.sleep(0.1)
    return [p.returncode for p in procs]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _root_cause(folder: Path, processes: int) -> str | None:
    """The error line of the process that failed first (its file was written first), or None. A line that only
    relays rank 0's error (Distributed.on_main) gives way to rank 0's own; the other processes' lines are what
    the first failure caused (a closed connection, ...), so they are not shown."""
    files = sorted((path for rank in range(processes) if (path := folder / f"rank-{rank}").is_file()),
                   key=lambda path: path.stat().st_mtime_ns)
    lines = [path.read_text().strip() for path in files]
    if (folder / "rank-0").is_file():
        lines = [line for line in lines if "rank 0 failed:" not in line] or lines
    return lines[0] if lines else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value

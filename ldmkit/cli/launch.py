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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ldmkit.errors import ConfigError

ERROR_DIR = "LDMKIT_ERROR_DIR"  # set in each launched process: where its error line goes (rank-<RANK>)
CPU_OPTION = {"train": "--set train.device=cpu", "eval": "--device cpu"}  # how each command is put on the CPU
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


def launch_processes(command: str, argv: list[str], processes: int, device: str | None) -> int:
    """Run `ldmkit *argv` in `processes` processes on `device` (auto, cpu, cuda; None: not known here, each
    process checks its own); the exit code and error line of the first failure, once."""
    from torch.distributed import TCPStore

    if device is not None:
        check_gpus(device, processes, command)
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    # The rendezvous store is the launcher's, on a port the system picks as it binds, so no other program can
    # take the port first; the processes all join it as clients, as under torchrun (TORCHELASTIC_USE_AGENT_STORE).
    # It must outlive them: every path below waits for (or stops) the processes before this function returns.
    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    with tempfile.TemporaryDirectory(prefix="ldmkit-errors-") as errors:
        base = {**os.environ, ERROR_DIR: errors, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port),
                "TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RESTART_COUNT": "0",  # (read by torch < 2.6)
                "WORLD_SIZE": str(processes),
                "LOCAL_WORLD_SIZE": str(processes)}
        base.setdefault("OMP_NUM_THREADS", threads)
        procs: list[subprocess.Popen] = []
        previous = signal.signal(signal.SIGTERM, _terminated)  # a stopped launcher stops its processes
        try:
            end_with_us = _end_with_parent(os.getpid())
            for rank in range(processes):
                procs.append(subprocess.Popen([sys.executable, "-m", "ldmkit", *argv], preexec_fn=end_with_us,
                                              env={**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}))
            order = _wait(procs)
        except (KeyboardInterrupt, _Terminated) as stop:  # Ctrl-C reached every process: let them end, say it once
            _stop(procs)
            print(f"ldmkit {command}: {'interrupted' if isinstance(stop, KeyboardInterrupt) else 'terminated'}",
                  file=sys.stderr)
            return 130 if isinstance(stop, KeyboardInterrupt) else 128 + signal.SIGTERM
        finally:
            signal.signal(signal.SIGTERM, previous)
        if not order:
            return 0
        rank, line = _root_cause(Path(errors), order, {r: p.returncode for r, p in enumerate(procs)})
        code = procs[rank].returncode
        if line is None and code < 0:
            line = (f"ldmkit {command}: error: process {rank} of {processes} was killed by "
                    f"{signal.Signals(-code).name} (out of memory?); use a smaller train.batch_size or fewer processes")
        print(line or f"ldmkit {command}: error: process {rank} of {processes} ended with exit code {code}; its "
              "output is above", file=sys.stderr)  # (no line: --debug's traceback is above)
        return code if code > 0 else 1


def check_gpus(device: str, processes: int, command: str) -> None:
    """With CUDA each process takes a GPU of its own: refuse more processes than GPUs before any starts."""
    from ldmkit.device import pick_device

    if pick_device(device).type != "cuda":
        return
    import torch

    gpus = torch.cuda.device_count()
    if processes > gpus:
        raise ConfigError(f"--processes {processes} needs a GPU for each process, but this machine has {gpus}; use "
                          f"--processes {gpus} (or the CPU, with gloo: {CPU_OPTION.get(command, '--device cpu')})")


class _Terminated(Exception):
    """SIGTERM reached the launcher."""


def _terminated(*_) -> None:
    raise _Terminated


def _end_with_parent(parent: int):
    """What each started process runs before ldmkit (Linux): SIGTERM when the launcher dies, even by SIGKILL, so
    that no process goes on training alone (and an end at once if it died before this ran). prctl is looked up
    here, in the launcher: a forked child should not import."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl, pr_set_pdeathsig = ctypes.CDLL(None, use_errno=True).prctl, 1

    def child() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(128 + signal.SIGTERM)

    return child


def _wait(procs: list[subprocess.Popen]) -> list[int]:
    """Wait for every process; the ranks that failed, in the order they were seen to fail. Once one has failed,
    the rest get GRACE_SECONDS and are then stopped (they may be waiting for it in a collective); those stopped
    here are not counted as failures."""
    order: list[int] = []
    failed_at = None
    while True:
        codes = [p.poll() for p in procs]  # (every process, each pass)
        order += [rank for rank, code in enumerate(codes) if code not in (None, 0) and rank not in order]
        if all(code is not None for code in codes):
            return order
        if order and failed_at is None:
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > GRACE_SECONDS:
            _stop(procs)
            return order
        time.sleep(0.1)


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


def _root_cause(folder: Path, order: list[int], codes: dict[int, int]) -> tuple[int, str | None]:
    """(the rank, its error line or None) that explains a failed run, from the ranks in the order they failed:
    the first with a bad-input line (exit code 2); else the first killed by a signal, having said nothing;
    else the first with a line. A process's teardown can let another fail first with a consequence (a closed
    connection: an exit-1 line), hence the preference. A line that only relays rank 0's error
    (Distributed.on_main) gives way to rank 0's own."""
    lines = {rank: (folder / f"rank-{rank}").read_text().strip() for rank in order
             if (folder / f"rank-{rank}").is_file()}
    if 0 in lines:
        lines = {rank: line for rank, line in lines.items() if rank == 0 or "rank 0 failed:" not in line}
    for rank in order:
        if rank in lines and codes[rank] == 2:
            return rank, lines[rank]
    for rank in order:
        if rank not in lines and codes[rank] < 0:
            return rank, None
    for rank in order:
        if rank in lines:
            return rank, lines[rank]
    return order[0], None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value

"""Timing helpers shared by the benchmarks: clocks, device sync, random weights, interleaved rounds."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def set_threads(threads: int | None) -> int:
    """torch's CPU threads: `threads`, or every core the process may use when None."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(threads or cores)
    return torch.get_num_threads()


def describe(device: torch.device, clock: Callable[[], float]) -> str:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    return f"device: {where}; clock: {clock.__name__}; torch {torch.__version__}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def redraw_zero_layers(model: nn.Module) -> nn.Module:
    """Re-draw the conv / linear layers CompVis starts at zero, so that every path counts (and a
    comparison of two implementations is not trivially 'equal': a zero output layer gives zeros)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)) and not module.weight.any():
            module.reset_parameters()
    return model


def measure(runs: dict, repeats: int, device: torch.device, clock: Callable[[], float], warmup: int = 1,
            context: Callable[[], contextlib.AbstractContextManager] = torch.inference_mode) -> tuple[dict, dict]:
    """Call every run `warmup` times (compilation, allocator, optimiser state; not timed), then
    `repeats` interleaved timed rounds. Returns ({name: [seconds per call]}, {name: last warm-up output})."""
    times, outputs = {name: [] for name in runs}, {}
    with context():
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(warmup):
                outputs[name] = run()
            sync(device)
            print(f"  warm-up {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        for _ in range(repeats):
            for name, run in runs.items():
                sync(device)
                start = clock()
                run()
                sync(device)
                times[name].append(clock() - start)
    return times, outputs


def matmul_peak(dtype: torch.dtype, device: torch.device, clock, repeats: int = 3) -> float:
    """Best FLOP/s of a large square torch.matmul loop."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty_like(a)
    loops = 20 if device.type == "cuda" else (8 if dtype == torch.bfloat16 else 2)
    best = float("inf")
    for _ in range(repeats + 1):
        sync(device)
        start = clock()
        for _ in range(loops):
            torch.matmul(a, b, out=out)
        sync(device)
        best = min(best, clock() - start)
    return 2 * n**3 * loops / best


def count_flops_of(fn: Callable[[], object]) -> int:
    """FLOPs of one call of fn (matrix products, convolutions and attention, forward and backward, as
    torch.utils.flop_counter counts them; element-wise work is not counted). Runs fn: use meta tensors
    to count without computing."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()

"""Exact attention at Stable Diffusion's sizes on this machine: which form is fastest.

    python benchmarks/attention.py                    # SD v1 at 512 px, float32 and bfloat16
    python benchmarks/attention.py --device cuda

Shapes (batch 2 = one guided step): the UNet's first level at 512 px, 4096 image tokens, 8 heads of 40,
self-attention and cross-attention to 77 text tokens; its second level, 1024 tokens, 8 heads of 80.
Forms, all exact up to rounding:
  sdpa      torch's F.scaled_dot_product_attention with its default choice (ldmkit's UNet; on CPU a
            flash-style kernel that never holds the N x M weights)
  math      softmax(q k^T / sqrt(d)) v as two matrix products and a softmax, the weights held whole
            (B x heads x N x M: 1 GiB in float32 at 4096 x 4096)
  chunked   `math` over 1024 queries at a time (the weights of one chunk at a time)
Each row: milliseconds per call (min and median of interleaved rounds), the largest difference from a
float64 reference, and the GFLOP/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import CLOCKS, describe, measure, set_threads
from ldmkit.device import pick_device

# name: (query tokens, key tokens, heads, head width)
SHAPES = {"level 1 self (64x64)": (4096, 4096, 8, 40), "level 1 cross (77 tokens)": (4096, 77, 8, 40),
          "level 2 self (32x32)": (1024, 1024, 8, 80)}
BATCH = 2
CHUNK = 1024


def math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    weights = torch.softmax((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5, dim=-1)  # (B, heads, N, M)
    return weights @ v


def chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.cat([math(q[..., i:i + CHUNK, :], k, v) for i in range(0, q.shape[-2], CHUNK)], dim=-2)


FORMS = {"sdpa": F.scaled_dot_product_attention, "math": math, "chunked": chunked}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    args = p.parse_args()
    set_threads(args.threads)
    device = pick_device(args.device)
    print(describe(device, CLOCKS["wall"]) + f"; batch {BATCH}\n")
    print("| shape | dtype | form | ms (min) | ms (median) | max diff vs float64 | GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for shape, (n, m, heads, width) in SHAPES.items():
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(BATCH, heads, size, width, generator=g) for size in (n, m, m))
        reference = math(q.double(), k.double(), v.double())
        flops = 4 * BATCH * heads * n * m * width  # two products of 2 N M d each
        for dtype in args.dtypes.split(","):
            inputs = [x.to(device, getattr(torch, dtype)) for x in (q, k, v)]
            runs = {name: (lambda fn=fn: fn(*inputs)) for name, fn in FORMS.items()}
            times, outputs = measure(runs, args.repeats, device, CLOCKS["wall"])
            for name in FORMS:
                best, median = min(times[name]), statistics.median(times[name])
                diff = (outputs[name].double().cpu() - reference).abs().max().item()
                print(f"| {shape} | {dtype} | {name} | {1e3 * best:.1f} | {1e3 * median:.1f} | {diff:.1e} | "
                      f"{flops / best / 1e9:.0f} |", flush=True)


if __name__ == "__main__":
    main()

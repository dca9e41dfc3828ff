"""The autoencoder's perceptual loss term, forward and backward, in the forms ldmkit has had.

    python benchmarks/perceptual.py                    # the main job's batch: 8 images of 64 px, bfloat16 autocast
    python benchmarks/perceptual.py --batch 16 --size 128 --precision fp32

Forms (EfficientNet-Lite0 taps, features/perceptual.py; fast/frozen.py):
  joint       one pass over the real and reconstructed images together, all 2B with a graph (ldmkit
              before 2026-12-05; forced here by letting the real images ask for gradients too)
  shipped     the real images' pass without a graph, so the backward runs over B images
  folded      + each BatchNorm folded into the convolution before it
  folded+cl   + channels_last (what train-autoencoder runs: fast.for_frozen_features)
Each row: milliseconds per forward + backward (min and median of interleaved rounds) and the
distance's largest difference from the joint form's.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import CLOCKS, describe, measure, set_threads
from ldmkit.device import autocast
from ldmkit.fast import fold_batchnorm, for_frozen_features
from ldmkit.features.perceptual import PerceptualConfig, build_perceptual

CPU = torch.device("cpu")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    args = p.parse_args()
    set_threads(args.threads)
    built = build_perceptual(PerceptualConfig())
    folded, fast = copy.deepcopy(built), copy.deepcopy(built)
    fold_batchnorm(folded.backbone)
    for_frozen_features(fast.backbone)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=g) * 2 - 1
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    forms = {"joint": (built, True), "shipped": (built, False), "folded": (folded, False), "folded+cl": (fast, False)}

    def run(dist: torch.nn.Module, joint: bool) -> torch.Tensor:
        rec = y.clone().requires_grad_()
        with autocast(CPU, args.precision):
            d = dist(x.clone().requires_grad_(joint), rec)
        d.sum().backward()
        return d.detach()

    runs = {name: (lambda form=form: run(*form)) for name, form in forms.items()}
    times, outputs = measure(runs, args.repeats, CPU, CLOCKS["wall"], warmup=3, context=torch.enable_grad)
    print(describe(CPU, CLOCKS["wall"]) + f"; {args.batch} + {args.batch} images of {args.size} px, {args.precision}\n")
    print("| form | ms (min) | ms (median) | max diff of the distance vs joint |")
    print("|---|---|---|---|")
    for name in forms:
        diff = (outputs[name] - outputs["joint"]).abs().max().item()
        print(f"| {name} | {1e3 * min(times[name]):.1f} | {1e3 * statistics.median(times[name]):.1f} | {diff:.1e} |")


if __name__ == "__main__":
    main()

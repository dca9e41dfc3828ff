"""Winograd F(4x4, 3x3) against torch's direct convolution: single convolutions, then ldmkit's 256 px
float32 pipeline (decoder, and 50-step DDIM + decode) with and without it, in interleaved rounds.

    .venv/bin/python benchmarks/winograd.py            # ~5 min on 2 cores
    .venv/bin/python benchmarks/winograd.py --quick    # small shapes and a 64 px pipeline, a smoke run

Prints Markdown tables and writes JSON under runs/benchmarks/. Timings are best of `--repeats`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import CLOCKS, describe, measure, set_threads  # noqa: E402
from benchmarks.sampling import SIZES, build_ldm, table  # noqa: E402
from ldmkit.diffusion.noise import randn_like_per_sample, seeded_generators  # noqa: E402
from ldmkit.fast import winograd  # noqa: E402
from ldmkit.pipeline import Pipeline  # noqa: E402

# (N, C_in, C_out, side): the SD-layout decoder's convolutions at 256 px (B = 2) and UNet-sized ones
CONVS = [(2, 512, 512, 32), (2, 512, 512, 64), (2, 512, 256, 128), (2, 256, 256, 128), (2, 256, 128, 256),
         (2, 128, 128, 256), (4, 128, 128, 16), (4, 256, 256, 8), (8, 128, 128, 32), (4, 64, 64, 32)]
QUICK_CONVS = [(1, 128, 128, 16), (2, 64, 64, 8)]


def bench_convs(shapes, repeats: int) -> list[dict]:
    runs, info = {}, {}
    for n, c, o, side in shapes:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, c, side, side, generator=g).contiguous(memory_format=torch.channels_last)
        w, b = torch.randn(o, c, 3, 3, generator=g) / (9 * c) ** 0.5, torch.randn(o, generator=g)
        u = winograd.transform_weight(w)
        runs[(n, c, o, side, "direct")] = lambda x=x, w=w, b=b: F.conv2d(x, w, b, padding=1)
        runs[(n, c, o, side, "winograd")] = lambda x=x, u=u, b=b: winograd.winograd_conv3x3(x, u, b)
        info[(n, c, o, side)] = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    times, outputs = measure(runs, repeats, torch.device("cpu"), time.perf_counter)
    rows = []
    for shape, reference in info.items():
        direct, wino = min(times[(*shape, "direct")]), min(times[(*shape, "winograd")])
        err = (outputs[(*shape, "winograd")].double() - reference).abs().max().item()
        rows.append({"N, C_in, C_out, side": ", ".join(map(str, shape)), "direct ms": direct * 1e3,
                     "winograd ms": wino * 1e3, "speed-up": direct / wino, "max |error| (outputs ~1)": err})
    return rows


def bench_pipeline(size: int, steps: int, repeats: int) -> list[dict]:
    """ldmkit's float32 Pipeline with Winograd on and off (MIN_CHANNELS out of reach), same weights, B = 2."""
    ae, unet, scale = SIZES[size]
    pipe = Pipeline(build_ldm(ae, unet, size, scale).eval())
    x_T = randn_like_per_sample((2, *pipe.model.latent_shape(size, size)), seeded_generators([0, 1]),
                                torch.device("cpu"), torch.float32)
    on = winograd.MIN_CHANNELS

    def switched(min_channels: int, fn):
        def run():
            winograd.MIN_CHANNELS = min_channels
            try:
                return fn()
            finally:
                winograd.MIN_CHANNELS = on
        return run

    def sample():
        return pipe.decode(pipe.latents([0, 1], torch.tensor([0, 1]), steps=steps, sampler="ddim", x_T=x_T))

    runs = {}
    for name, fn in (("decode", lambda: pipe.decode(x_T)), (f"{steps}-step DDIM + decode", sample)):
        runs[(name, "direct")] = switched(10**9, fn)
        runs[(name, "winograd")] = switched(on, fn)
    times, outputs = measure(runs, repeats, torch.device("cpu"), time.perf_counter)
    rows = []
    for name in ("decode", f"{steps}-step DDIM + decode"):
        direct, wino = min(times[(name, "direct")]), min(times[(name, "winograd")])
        diff = (outputs[(name, "winograd")] - outputs[(name, "direct")]).abs().max().item()
        rows.append({"case": f"{size} px, B=2, float32: {name}", "direct s/img": direct / 2, "winograd s/img": wino / 2,
                     "speed-up": direct / wino, "max |diff| of images in [-1, 1]": diff})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, 64 px, 5 steps, 1 round")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 3; --quick 1)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "runs" / "benchmarks"))
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    set_threads(args.threads)
    print(describe(torch.device("cpu"), CLOCKS["wall"]) + "\n")
    torch.set_grad_enabled(False)
    convs = bench_convs(QUICK_CONVS if args.quick else CONVS, repeats)
    print(table(list(convs[0]), [list(r.values()) for r in convs]) + "\n")
    pipeline = bench_pipeline(64 if args.quick else 256, 5 if args.quick else 50, repeats)
    print(table(list(pipeline[0]), [list(r.values()) for r in pipeline]) + "\n")
    out = Path(args.out) / f"winograd-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": describe(torch.device("cpu"), CLOCKS["wall"]), "convs": convs,
                               "pipeline": pipeline}, indent=2) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

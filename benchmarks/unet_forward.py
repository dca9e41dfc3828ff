"""Time ldmkit's UNet against diffusers' UNet2DConditionModel with the same config and weights.

    python benchmarks/unet_forward.py [--quick] [--sizes small,sd] [--batches 1,2] [--compile]
                                      [--threads N] [--repeats N] [--device auto|cpu|cuda] [--clock wall|cpu]
                                      [--context-tokens 77]

Sizes: "small" is the emoji-small preset at latent 4x32x32 with 77 context tokens of width 384;
"sd" is Stable Diffusion v1 (sd-v1) at latent 4x64x64 with 77x768 context. --context-tokens 1 stands
for a class-conditional model (one class token), where ldmkit's cross-attention at inference is the
value projection alone (one key: every softmax weight is 1). Both models get the
same random weights (ldmkit's zero-initialised layers re-drawn so that every path counts), converted
with ldmkit.interop.diffusers_unet. Variants:
  fp32          float32 weights, NCHW
  bf16-cl       bfloat16 weights, channels_last (diffusers' fastest eager variant on CPU)
  bf16-autocast float32 weights under bfloat16 autocast (not with --quick)
  *+compile     torch.compile (on CPU with inductor weight freezing), both models alike (--compile)
Each variant runs interleaved with the others `--repeats` times; the table shows the best and the
median time (wall clock, or CPU time with --clock cpu), the speed-up against diffusers' same
variant and against diffusers' fastest eager variant, the FLOP rate (FLOPs counted by
torch.utils.flop_counter) as a share of the measured matmul peak of that dtype, and the largest
output difference to diffusers' same variant and to the float32 reference. On a shared machine,
run it more than once: timings are noisy (with 2 threads on 2 busy cores, by up to 4x).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import CLOCKS, count_flops_of, describe, matmul_peak, measure, redraw_zero_layers  # noqa: E402
from ldmkit.device import pick_device  # noqa: E402
from ldmkit.fast.attention import use_fast_attention  # noqa: E402
from ldmkit.interop.diffusers_unet import to_diffusers  # noqa: E402
from ldmkit.unet import UNET_PRESETS, UNet  # noqa: E402

SIZES = {"small": ("emoji-small", 32), "sd": ("sd-v1", 64)}  # preset, latent side


def count_flops(cfg, batch: int, side: int, tokens: int) -> int:
    """FLOPs of one call, in train mode: the full cross-attention diffusers computes, also where
    ldmkit's inference skips it (one context token)."""
    with torch.device("meta"):
        model = UNet(cfg).train()
        x = torch.randn(batch, cfg.in_channels, side, side)
        context = torch.randn(batch, tokens, cfg.context_dim)
    with torch.no_grad():
        return count_flops_of(lambda: model(x, torch.full((batch,), 500), context))


def random_unet(cfg, device: torch.device) -> UNet:
    """ldmkit's UNet as its Pipeline runs it: with the attention shortcuts of ldmkit/fast/attention.py."""
    torch.manual_seed(0)
    return use_fast_attention(redraw_zero_layers(UNet(cfg))).eval().to(device)


def compiled(model: nn.Module, device: torch.device) -> nn.Module:
    if device.type == "cpu":
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # fold weights into the graph: prepacked oneDNN weights, fused bias
    return torch.compile(model, dynamic=False)  # specialised per batch size


def bench_size(size: str, batches: list[int], args, device: torch.device, peaks: dict) -> list[dict]:
    preset, side = SIZES[size]
    cfg = UNET_PRESETS[preset]
    ours = random_unet(cfg, device)
    theirs = to_diffusers(ours).eval()
    cl = torch.channels_last
    g = torch.Generator().manual_seed(1)
    inputs = {}
    for b in batches:
        x = torch.randn(b, cfg.in_channels, side, side, generator=g).to(device)
        context = torch.randn(b, args.context_tokens, cfg.context_dim, generator=g).to(device)
        t = torch.full((b,), 500, device=device)
        inputs[b] = (x, t, context), (x.to(torch.bfloat16).contiguous(memory_format=cl), t, context.bfloat16())
    outputs, times = {}, {}

    def record(runs: dict) -> None:  # two untimed calls each: compilation, then a warm call
        run_times, run_outputs = measure(runs, args.repeats, device, args.clock, warmup=2)
        times.update(run_times)
        outputs.update({key: out.float() for key, out in run_outputs.items()})

    def autocast(fn):
        def run(*a):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return fn(*a)
        return run

    variants = {"fp32": (ours, lambda *a: theirs(*a).sample)}
    if not args.quick:
        variants["bf16-autocast"] = (autocast(ours), autocast(lambda *a: theirs(*a).sample))
    for b in batches:
        record({(b, v, impl): partial(fn, *inputs[b][0])
                for v, pair in variants.items() for impl, fn in zip(("ldmkit", "diffusers"), pair)})
    ours.to(torch.bfloat16, memory_format=cl)  # in place: the float32 weights are no longer needed
    theirs.to(torch.bfloat16, memory_format=cl)
    variants = {"bf16-cl": (ours, lambda *a: theirs(*a).sample)}
    if args.compile:
        ours_c, theirs_c = compiled(ours, device), compiled(theirs, device)
        variants["bf16-cl+compile"] = (ours_c, lambda *a: theirs_c(*a).sample)
    for b in batches:
        record({(b, v, impl): partial(fn, *inputs[b][1])
                for v, pair in variants.items() for impl, fn in zip(("ldmkit", "diffusers"), pair)})

    rows = []
    for b in batches:
        flops = count_flops(cfg, b, side, args.context_tokens)
        reference = outputs[(b, "fp32", "ldmkit")]
        fastest_eager = min(min(v) for (bb, variant, impl), v in times.items()
                            if bb == b and impl == "diffusers" and "compile" not in variant)
        for (bb, variant, impl), ts in times.items():
            if bb != b:
                continue
            best = min(ts)
            peak = peaks["fp32" if variant == "fp32" else "bf16"]
            rows.append({
                "size": f"{size} {cfg.in_channels}x{side}x{side} B={b}, {args.context_tokens} tokens",
                "variant": variant, "impl": impl,
                "best_ms": best * 1e3, "median_ms": statistics.median(ts) * 1e3,
                "vs_same": min(times[(b, variant, "diffusers")]) / best, "vs_fastest_eager": fastest_eager / best,
                "tflops": flops / best / 1e12, "peak_share": flops / best / peak, "gflop": flops / 1e9,
                "diff_diffusers": (outputs[(b, variant, impl)] - outputs[(b, variant, "diffusers")]).abs().max().item(),
                "diff_fp32": (outputs[(b, variant, impl)] - reference).abs().max().item(),
            })
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1, 2 repeats, no autocast variant")
    parser.add_argument("--sizes", default="small,sd", help="comma-separated: small, sd")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,2; --quick: 1)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd bf16-cl models")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per variant (default 5; --quick: 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--context-tokens", type=int, default=77, help="context length (1: a class token)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: process CPU time, for a shared machine with --threads 1 (it then leaves out "
                             "the time the process waits for a core)")
    args = parser.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu measures one thread's work: use it with --threads 1")
    args.repeats = args.repeats or (2 if args.quick else 5)
    batches = [int(b) for b in (args.batches or ("1" if args.quick else "1,2")).split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    clock = CLOCKS[args.clock]
    args.clock = clock
    peaks = {"bf16": matmul_peak(torch.bfloat16, device, clock), "fp32": matmul_peak(torch.float32, device, clock)}
    print(f"{describe(device, clock)}; matmul peak bf16 {peaks['bf16'] / 1e12:.2f} TFLOP/s, "
          f"fp32 {peaks['fp32'] / 1e12:.2f} TFLOP/s\n")
    print("| size | variant | impl | best ms | median ms | x vs diffusers same | x vs diffusers fastest eager "
          "| TFLOP/s | % of peak | max diff to diffusers | max diff to fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        if size not in SIZES:
            parser.error(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
        for r in bench_size(size, batches, args, device, peaks):
            print(f"| {r['size']} ({r['gflop']:.0f} GFLOP) | {r['variant']} | {r['impl']} | {r['best_ms']:.1f} "
                  f"| {r['median_ms']:.1f} | {r['vs_same']:.2f} | {r['vs_fastest_eager']:.2f} | {r['tflops']:.3f} "
                  f"| {100 * r['peak_share']:.0f} | {r['diff_diffusers']:.2e} | {r['diff_fp32']:.2e} |", flush=True)


if __name__ == "__main__":
    main()

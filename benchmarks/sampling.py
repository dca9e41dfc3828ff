"""Sampling seconds per image and training images per second: ldmkit against diffusers, same weights.

    python benchmarks/sampling.py                    # every case below, on all cores
    python benchmarks/sampling.py --quick            # tiny models, 5 steps, 1 round: a smoke test of every path
    python benchmarks/sampling.py --cases sample --sizes 256 --variants fp32,bf16 --threads 16

Class-conditional random-weight models (the class is one context token), converted with ldmkit.interop.
  sample  s/img: one call of --steps (50) DDIM steps (eta 0, the same start noise) + decoding of --batch
          images, / --batch. Without guidance (scale 1: one conditional UNet call per step) and with
          --guidance (one call per step on [uncond; cond], in both libraries). 64 px: the KL-f4 autoencoder
          of configs/autoencoder/kl-f4-emoji64.yaml + the emoji-small UNet at 4x16x16; 256 px: CompVis'
          KL-f8 autoencoder (Stable Diffusion's VAE layout) + UNET_42M at 4x32x32. ldmkit: Pipeline.latents
          + Pipeline.decode; diffusers: StableDiffusionPipeline with the class tokens as (negative_)prompt_embeds.
          --variants: fp32; bf16 (bfloat16 channels_last UNet and decoder: Pipeline(dtype=torch.bfloat16),
          diffusers' UNet and VAE alike); bf16+compile (also torch.compile, CPU weight freezing, both alike).
  train   img/s of one optimiser step of UNET_42M (42.5 M parameters) at latent 4x32x32, batch --train-batch (8),
          fp32 and bf16 autocast (--precisions). ldmkit: the loop body of training/ldm.py (TrainedParts,
          backward, clipping, AdamW, EMA); diffusers: its train_text_to_image loop (add_noise, MSE on eps,
          clipping, AdamW, EMAModel.step). Current figures: the README's Benchmarks section.
  pixel   img/s of ldmkit's step on cached latents (f = 4: 128 px images as 4x32x32, the default latent
          cache), with the encoder run every step (latent_cache: false), and of the f = 1 pixel baseline
          (the same UNet on 3x128x128).
Every row also gives its FLOP rate: the FLOPs torch.utils.flop_counter counts (matrix products, convolutions,
attention; per image: the sampling call's UNet calls + decode, or the UNet's forward + backward) per second, and
that as a share of the matmul peak measured for its dtype at the start (a 2048^2 torch.matmul loop).
Each run is called --warmup times untimed (compilation, optimiser state), then --repeats timed rounds
interleaved across the runs of a case; best / median over the rounds. x = the reference's best time /
this row's (> 1: this row is faster; the target is >= 1.5 against diffusers). Check: the fp32 samples
(latents, [0, 1] images) agree, max |diff| / max |diffusers| <= --tolerance, else exit status 1; bf16
differences (max diff columns) are reported only. Output: Markdown tables; JSON in runs/benchmarks/ (--out).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import statistics
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import (  # noqa: E402
    CLOCKS,
    count_flops_of,
    describe,
    matmul_peak,
    measure,
    redraw_zero_layers,
    set_threads,
)
from ldmkit.autoencoder.config import AutoencoderConfig  # noqa: E402
from ldmkit.conditioning import ConditioningConfig  # noqa: E402
from ldmkit.conditioning.sections import ClassConfig  # noqa: E402
from ldmkit.device import autocast, pick_device  # noqa: E402
from ldmkit.diffusion.noise import randn_like_per_sample, seeded_generators  # noqa: E402
from ldmkit.diffusion.schedule import DiffusionConfig  # noqa: E402
from ldmkit.fast import compile_for_inference, for_training  # noqa: E402
from ldmkit.interop.diffusers_autoencoder import to_diffusers as ae_to_diffusers  # noqa: E402
from ldmkit.interop.diffusers_scheduler import scheduler_config  # noqa: E402
from ldmkit.interop.diffusers_unet import to_diffusers as unet_to_diffusers  # noqa: E402
from ldmkit.pipeline import LatentDiffusion, LDMConfig, Pipeline  # noqa: E402
from ldmkit.training.config import TrainConfig, adamw  # noqa: E402
from ldmkit.training.ema import EMA  # noqa: E402
from ldmkit.training.ldm import TrainedParts, apply_gradients  # noqa: E402
from ldmkit.unet import UNET_PRESETS  # noqa: E402

UNET_42M = replace(UNET_PRESETS["emoji-small"], channel_mult=(1, 2, 4, 4), attention_resolutions=(2, 4, 8),
                   sample_size=32)  # emoji-small with a fourth level: 42.5 M parameters
AE_F4 = AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 2, 4), num_res_blocks=1)  # kl-f4-emoji64.yaml's model
AE_F8 = AutoencoderConfig(kind="kl", ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2)  # CompVis kl-f8
SIZES = {64: (AE_F4, UNET_PRESETS["emoji-small"], 1.0), 256: (AE_F8, UNET_42M, 0.18215)}  # px: AE, UNet, scale
QUICK_AE = AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 2), num_res_blocks=1)  # f = 2
QUICK_UNET = UNET_PRESETS["tiny-crossattn"]
QUICK_SIDE = {64: 16, 256: 32}  # --quick: image sides standing for the sizes
NUM_CLASSES, DROP_PROB, EMA_DECAY = 10, 0.1, 0.9999
QUICK_DEFAULTS = {"steps": (50, 5), "batch": (2, 1), "train_batch": (8, 2), "repeats": (3, 1), "warmup": (2, 1)}
PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # rows' FLOP rates as shares of these matmul peaks
REFERENCES = {("latent", "diffusers"): "diffusers", ("pixel", "ldmkit"): "pixel f=1"}  # training "x vs" names


def build_ldm(ae: AutoencoderConfig, unet, side: int, scale: float = 1.0) -> LatentDiffusion:
    """A class-conditional LDM with seeded random weights (zero-initialised layers re-drawn)."""
    classes = ClassConfig(num_classes=NUM_CLASSES, embed_dim=unet.context_dim)
    cfg = LDMConfig(ae, unet, DiffusionConfig(), ConditioningConfig(kind="class", class_label=classes), scale, side)
    torch.manual_seed(0)
    return redraw_zero_layers(LatentDiffusion(cfg))


def params_m(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def sampling_flops(model: LatentDiffusion, side: int, steps: int) -> dict[bool, float]:
    """{guided: FLOPs per image}: `steps` UNet calls (two rows per image with guidance) + one decode,
    counted on a meta-device copy (nothing computed), in train mode: with the full cross-attention that
    diffusers computes, not ldmkit's one-token inference shortcut."""
    meta = copy.deepcopy(model).to("meta").train()
    z = torch.zeros(1, *meta.latent_shape(side, side), device="meta")
    context = torch.zeros(1, 1, meta.unet.config.context_dim, device="meta")
    with torch.no_grad():
        unet = count_flops_of(lambda: meta.unet(z, torch.full((1,), 500, device="meta"), context))
        decode = count_flops_of(lambda: meta.decode(z))
    return {False: steps * unet + decode, True: 2 * steps * unet + decode}


def training_flops(model: LatentDiffusion, z0: torch.Tensor) -> float:
    """FLOPs per image of the UNet's forward + backward at z0's shape (the optimiser's work is not counted)."""
    meta = copy.deepcopy(model.unet).to("meta")
    x = torch.zeros(z0.shape, device="meta")
    context = torch.zeros(len(z0), 1, meta.config.context_dim, device="meta")
    t = torch.full((len(z0),), 500, device="meta")
    return count_flops_of(lambda: meta(x, t, context).sum().backward()) / len(z0)


def rate(flops_per_image: float, s_per_image: float, peak: float) -> dict:
    return {"gflops": flops_per_image / s_per_image / 1e9, "share_of_matmul_peak": flops_per_image / s_per_image / peak}


# ---- sampling --------------------------------------------------------------------------------------

def diffusers_pipeline(model: LatentDiffusion, device: torch.device, dtype: torch.dtype, compile: bool):
    """diffusers' StableDiffusionPipeline with `model`'s weights (no text encoder: embeddings are given)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from diffusers.utils import logging

    logging.set_verbosity_error()  # not its notes on casting to bfloat16 with .to()
    vae, unet = ae_to_diffusers(model.first_stage, model.config.scale_factor), unet_to_diffusers(model.unet)
    scheduler = DDIMScheduler.from_config(scheduler_config(model.config.diffusion))
    pipe = StableDiffusionPipeline(vae, None, None, unet, scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False).to(device)  # no text encoder: embeddings given
    pipe.set_progress_bar_config(disable=True)
    if dtype != torch.float32:
        pipe.unet.to(dtype=dtype, memory_format=torch.channels_last)
        pipe.vae.to(dtype=dtype, memory_format=torch.channels_last)
    if compile:
        pipe.unet = compile_for_inference(pipe.unet, device)
        pipe.vae.decode = compile_for_inference(pipe.vae.decode, device)
    return pipe


def ldmkit_sampler(pipe: Pipeline, labels: list[int], guidance: float, x_T: torch.Tensor, steps: int):
    def run():  # -> (latents, images in [0, 1] as diffusers' output_type "pt")
        z = pipe.latents(range(len(labels)), torch.tensor(labels), steps=steps, sampler="ddim", guidance=guidance,
                         x_T=x_T)
        return z.float(), (pipe.decode(z).float() + 1) / 2  # (B, C, h, w), (B, 3, H, W)
    return run


def diffusers_sampler(pipe, dtype, cond, null, guidance: float, x_T: torch.Tensor, steps: int, side: int):
    final = {}  # the last step's latents, for the check

    def keep(_pipe, _i, _t, tensors: dict) -> dict:
        final.update(tensors)
        return tensors

    def run():
        images = pipe(prompt_embeds=cond.to(dtype), negative_prompt_embeds=null.to(dtype), latents=x_T.to(dtype),
                      height=side, width=side, num_inference_steps=steps, guidance_scale=guidance,
                      output_type="pt", callback_on_step_end=keep).images  # (B, 3, H, W) in [0, 1]
        return final["latents"].float(), images.float()
    return run


def bench_sampling(size: int, args, device: torch.device) -> tuple[list[dict], list[dict]]:
    ae, unet, scale = (QUICK_AE, QUICK_UNET, 1.0) if args.quick else SIZES[size]
    side = QUICK_SIDE[size] if args.quick else size
    reference = build_ldm(ae, unet, side, scale).eval().to(device)
    labels = [i % NUM_CLASSES for i in range(args.batch)]
    shape = (args.batch, *reference.latent_shape(side, side))
    x_T = randn_like_per_sample(shape, seeded_generators(range(args.batch)), device, torch.float32)
    with torch.no_grad():
        cond = reference.condition(torch.tensor(labels))["context"]  # (B, 1, D)
        null = reference.null_condition(args.batch, device)["context"]
    flops = sampling_flops(reference, side, args.steps)
    runs, guidances = {}, (1.0, args.guidance)
    for variant in args.variants:
        dtype = torch.bfloat16 if variant.startswith("bf16") else torch.float32
        compile = variant.endswith("+compile")
        ours = Pipeline(copy.deepcopy(reference), device, dtype=dtype, compile=compile)
        theirs = diffusers_pipeline(copy.deepcopy(reference), device, dtype, compile)
        for g in guidances:
            runs[(g, variant, "ldmkit")] = ldmkit_sampler(ours, labels, g, x_T, args.steps)
            runs[(g, variant, "diffusers")] = diffusers_sampler(theirs, dtype, cond, null, g, x_T, args.steps, side)
    times, outputs = measure(runs, args.repeats, device, args.clock, args.warmup, contextlib.nullcontext)
    case = (f"{side} px, {'x'.join(map(str, shape[1:]))} latent, UNet {params_m(reference.unet):.1f} M, "
            f"AE f={reference.factor}, B={args.batch}")
    rows, checks = [], []
    for (g, variant, impl), ts in times.items():
        best, (z, images) = min(ts), outputs[(g, variant, impl)]
        fastest = min(min(t) for (gg, _, i), t in times.items() if gg == g and i == "diffusers")
        fp32 = outputs.get((g, "fp32", "ldmkit"))
        rows.append({"case": case, "guidance": g, "variant": variant, "impl": impl,
                     "s_per_image_best": best / args.batch, "s_per_image_median": statistics.median(ts) / args.batch,
                     "x_vs_diffusers_same": min(times[(g, variant, "diffusers")]) / best,
                     "x_vs_diffusers_fastest": fastest / best,
                     "diff_to_diffusers": (images - outputs[(g, variant, "diffusers")][1]).abs().max().item(),
                     "diff_to_fp32": None if fp32 is None else (images - fp32[1]).abs().max().item(),
                     **rate(flops[g != 1], best / args.batch, args.peaks[variant[:4]])})
        if variant == "fp32" and impl == "ldmkit":
            diffs = [((a - b).abs().max() / b.abs().max()).item()  # relative: random-weight latents run large
                     for a, b in zip((z, images), outputs[(g, variant, "diffusers")])]
            checks.append({"what": f"sample {case}, guidance {g}: fp32 ldmkit vs diffusers (latents, images)",
                           "max_rel_diff": diffs, "tolerance": args.tolerance, "ok": max(diffs) <= args.tolerance})
    return rows, checks


# ---- training ---------------------------------------------------------------------------------------

def ldmkit_trainer(model: LatentDiffusion, precision: str, x: torch.Tensor, labels: torch.Tensor):
    """One step of training/ldm.py's loop (one process, no accumulation) on the cached latents x (B, C, h, w):
    run() -> loss; run(images) encodes images (B, 3, H, W) first, as with latent_cache: false."""
    tc = TrainConfig(batch_size=x.shape[0], precision=precision)
    trainable = TrainedParts(for_training(model).train())
    ema = EMA(trainable, EMA_DECAY)
    opt = adamw((p for p in trainable.parameters() if p.requires_grad), tc)  # fused, as the trainer's
    counter = itertools.count()

    def run(images: torch.Tensor | None = None) -> float:
        n = next(counter)
        batch = {"seed": torch.arange(n * len(x), (n + 1) * len(x)), "label": labels}  # fresh t and noise
        opt.zero_grad(set_to_none=True)
        z0 = x if images is None else model.encode(images)  # (B, C, h, w)
        with autocast(x.device, precision):
            loss = trainable(z0, batch, DROP_PROB)
            loss.backward()
        loss = loss.item()  # the loop's non-finite guard reads it
        apply_gradients(trainable, opt, ema, tc.grad_clip)
        return loss
    return run


def diffusers_trainer(model: LatentDiffusion, precision: str, x: torch.Tensor, labels: torch.Tensor):
    """One step of diffusers' train_text_to_image loop on the same UNet and class tokens: run() -> loss."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    tc = TrainConfig(batch_size=x.shape[0], precision=precision)
    unet = unet_to_diffusers(model.unet).to(x.device).train()
    embedding = copy.deepcopy(model.conditioner.embedding).to(x.device)  # class -> context token, trained
    params = [*unet.parameters(), *embedding.parameters()]
    scheduler = DDPMScheduler.from_config(scheduler_config(model.config.diffusion))
    ema = EMAModel(params, decay=EMA_DECAY)
    opt = torch.optim.AdamW(params, lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay)
    null = model.conditioner.null_label

    def run() -> float:
        noise = torch.randn_like(x)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x),), device=x.device)
        noisy = scheduler.add_noise(x, noise, t)
        dropped = torch.where(torch.rand(len(x), device=x.device) < DROP_PROB, null, labels)
        with autocast(x.device, precision):
            pred = unet(noisy, t, embedding(dropped)[:, None]).sample  # context (B, 1, D)
            loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        opt.step()
        opt.zero_grad()
        ema.step(params)
        return loss.item()
    return run


def bench_training(args, device: torch.device) -> list[dict]:
    (ae, unet, side), b = (QUICK_AE, QUICK_UNET, 16) if args.quick else (AE_F4, UNET_42M, 128), args.train_batch
    latent, g = build_ldm(ae, unet, side).to(device), torch.Generator().manual_seed(0)
    z0 = torch.randn(b, *latent.latent_shape(side, side), generator=g).to(device)
    images = (torch.rand(b, 3, side, side, generator=g) * 2 - 1).to(device)
    labels = torch.randint(0, NUM_CLASSES, (b,), generator=g).to(device)
    u = f"UNet {params_m(latent.unet):.1f} M, B={b}"
    cases = {"unet": f"train {u}, latent {'x'.join(map(str, z0.shape[1:]))}",
             "cached": f"latent f={latent.factor} (cached latents), {side} px, {u}",
             "encode": f"latent f={latent.factor} + encoder every step, {side} px, {u}",
             "pixel": f"pixel f=1, 3x{side}x{side}, same UNet with 3 channels, B={b}"}
    rows, flops = [], training_flops(latent, z0)
    for precision in args.precisions:  # one precision at a time: each run holds weights, AdamW state, EMA
        ours = ldmkit_trainer(copy.deepcopy(latent), precision, z0, labels)
        runs = {("latent", "ldmkit"): ours}
        if "train" in args.cases:
            runs[("latent", "diffusers")] = diffusers_trainer(copy.deepcopy(latent), precision, z0, labels)
        if "pixel" in args.cases:
            pixel = build_ldm(AutoencoderConfig(kind="identity"), replace(unet, in_channels=3, out_channels=3), side)
            runs[("encode", "ldmkit")] = partial(ours, images)
            runs[("pixel", "ldmkit")] = ldmkit_trainer(pixel.to(device), precision, images, labels)
        times, _ = measure(runs, args.repeats, device, args.clock, args.warmup, contextlib.nullcontext)

        def row(case: str, key: tuple, reference: tuple) -> dict:
            ts = times[key]
            unet = case == "unet"  # the FLOP rate of the UNet's step (the other cases run other networks too)
            return {"case": cases[case], "precision": precision, "impl": key[1], "images_per_s_best": b / min(ts),
                    "images_per_s_median": b / statistics.median(ts), "x_vs": REFERENCES[reference],
                    "x": min(times[reference]) / min(ts),
                    **(rate(flops, min(ts) / b, args.peaks[precision]) if unet else {"gflops": None,
                                                                                     "share_of_matmul_peak": None})}
        if "train" in args.cases:
            rows += [row("unet", ("latent", impl), ("latent", "diffusers")) for impl in ("ldmkit", "diffusers")]
        if "pixel" in args.cases:
            rows += [row(case, (key, "ldmkit"), ("pixel", "ldmkit"))
                     for case, key in (("cached", "latent"), ("encode", "encode"), ("pixel", "pixel"))]
    return rows


# ---- main -------------------------------------------------------------------------------------------

def table(headers: list[str], rows: list[list]) -> str:
    def cell(v):
        return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="tiny models at 16 and 32 px, 5 steps, B=1 (train B=2), 1 round")
    add("--cases", default="sample,train,pixel", help="comma-separated: sample, train, pixel")
    add("--sizes", default="64,256", help="sampling image sides, comma-separated: 64, 256")
    add("--variants", help="sampling: fp32, bf16, bf16+compile (default all; --quick: fp32,bf16)")
    add("--precisions", default="fp32,bf16", help="training: fp32, bf16 (autocast)")
    add("--guidance", type=float, default=7.5, help="the guided case's scale (the other one is 1)")
    for flag, what in (("steps", "DDIM steps"), ("batch", "images per sampling call"),
                       ("train-batch", "training batch"), ("repeats", "timed rounds"), ("warmup", "untimed calls")):
        full, quick = QUICK_DEFAULTS[flag.replace("-", "_")]
        add(f"--{flag}", type=int, help=f"{what} (default {full}; --quick: {quick})")
    add("--tolerance", type=float, default=1e-3, help="fp32 check: largest max |diff| / max |diffusers|")
    add("--threads", type=int, help="torch CPU threads (default: all cores)")
    add("--device", default="auto")
    add("--clock", choices=tuple(CLOCKS), default="wall", help="cpu: process CPU time (with --threads 1)")
    add("--out", default=str(Path(__file__).resolve().parents[1] / "runs" / "benchmarks"), help="JSON folder")
    args = parser.parse_args(argv)
    for key, defaults in QUICK_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, defaults[args.quick])
    args.variants = args.variants or ("fp32,bf16" if args.quick else "fp32,bf16,bf16+compile")
    for key, known in (("cases", ("sample", "train", "pixel")), ("sizes", ("64", "256")),
                       ("variants", ("fp32", "bf16", "bf16+compile")), ("precisions", ("fp32", "bf16"))):
        setattr(args, key, getattr(args, key).split(","))
        if set(getattr(args, key)) - set(known):
            parser.error(f"--{key}: unknown {sorted(set(getattr(args, key)) - set(known))}; choose from {known}")
    args.sizes = [int(size) for size in args.sizes]
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu measures one thread's work: use it with --threads 1")
    set_threads(args.threads)
    device, args.clock = pick_device(args.device), CLOCKS[args.clock]
    args.peaks = {name: matmul_peak(dtype, device, args.clock) for name, dtype in PEAK_DTYPES.items()}
    header = describe(device, args.clock) + "; matmul peak " + ", ".join(
        f"{name} {peak / 1e9:.0f} GFLOP/s" for name, peak in args.peaks.items())
    print(f"{header}{' (--quick: tiny models, not the sizes named)' if args.quick else ''}\n")
    result = {"device": header, "args": {k: v for k, v in vars(args).items() if k != "clock"}, "sample": [],
              "train": [], "checks": []}
    if "sample" in args.cases:
        for size in args.sizes:
            rows, checks = bench_sampling(size, args, device)
            result["sample"] += rows
            result["checks"] += checks
        print(table(["sampling case", "guidance", "variant", "impl", "s/img best", "s/img median",
                     "x vs diffusers same", "x vs diffusers fastest", "max diff to diffusers", "max diff to fp32",
                     "GFLOP/s", "share of matmul peak"],
                    [list(r.values()) for r in result["sample"]]) + "\n")
    if {"train", "pixel"} & set(args.cases):
        result["train"] = bench_training(args, device)
        print(table(["training case", "precision", "impl", "img/s best", "img/s median", "x vs", "x", "GFLOP/s",
                     "share of matmul peak"],
                    [list(r.values()) for r in result["train"]]) + "\n")
    for check in result["checks"]:
        diffs = ", ".join(f"{d:.2e}" for d in check["max_rel_diff"])
        print(f"check {'ok' if check['ok'] else 'FAILED'}: {check['what']}: max |diff| / max |diffusers| {diffs} "
              f"(tolerance {check['tolerance']:g})")
    out = Path(args.out) / f"sampling-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults: {out}")
    return 0 if all(c["ok"] for c in result["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())

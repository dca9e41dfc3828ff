"""Stable Diffusion size on this machine: one guided 512 px image, ldmkit with each lever on and off, and diffusers.

    python benchmarks/sd_cpu.py                       # every row (about 15 min on 2 cores)
    python benchmarks/sd_cpu.py --rows bf16-dpmpp15k-interval-cache3,diffusers-bf16-cl-dpmpp15k
    python benchmarks/sd_cpu.py --quick               # a small model at 128 px: a smoke test of every row
    python benchmarks/sd_cpu.py --device cuda         # the same rows on a GPU

The model has random weights at Stable Diffusion v1's sizes: the sd-v1 UNet (860 M parameters),
CompVis' KL-f8 VAE (SD's) and, standing in for CLIP ViT-L/14's text tower, ldmkit's 12-layer 768-wide
text transformer (BERT WordPiece, 77 tokens: the UNet attends to the same 77 x 768 context). Guidance
7.5, prompt and empty negative prompt, seed 0. Each row runs in a fresh process, so its peak resident
memory (ru_maxrss) is its own: the row builds its model in the dtype it runs in (as loading a
checkpoint of that precision would), warms up with a 1-step image of the same size (oneDNN
primitives, Winograd filter transforms: "warm-up s"), then times one whole image (prompt encoding,
the sampler's steps, the decode). The DDIM-50 rows time 2 and 6 steps and extrapolate to 50 (the
cost per DDIM step is constant): s/image = fixed + 50 x per-step. The decode1024 rows decode one
1024 px image (a 128 x 128 latent, in tiles as the Pipeline cuts them: the decoder's top activation
within 128 MiB: 3 x 3 tiles of 384 px in bfloat16, 4 x 4 of 304 px in float32) with the same VAE: their
peak RSS shows that memory stays bounded at twice the size (their model has a tiny UNet).

Levers: the dtype (float32, or bfloat16 weights in channels_last: AMX / AVX512-BF16 here);
DPM++ 2M with Karras sigmas at 15 steps instead of DDIM at 50; guidance only for sigma in
(0.28, 5.42] (--guidance-interval: the unconditional pass is skipped elsewhere); DeepCache-style
feature reuse (--cache-interval 3: the whole UNet every 3rd call); torch.compile (--compile; not with
DeepCache, whose partial UNet calls a compiled graph cannot make): its warm-up is the compile, first
with an empty compile cache (COMPILE_CACHE, emptied by the -cold row), then, in the next process, with
the code the cold row cached on disk (the -warm row; run it after -cold); a TAESD-size tiny decoder
(--tiny-decoder; the -tiny rows, random weights: its quality cost comes from a distilled one, see
experiments/tiny_decoder.py) instead of the VAE's decoder. diffusers rows: its
StableDiffusionPipeline (UNet2DConditionModel + AutoencoderKL of the same configs, its own random
weights; the prompt embeddings are given, so its rows leave out the text encoder, about 0.1 s) with
DPMSolverMultistepScheduler (Karras sigmas) or DDIM, float32 or bfloat16 channels_last (its fastest
eager variant on this CPU).

Columns: s/image; warm-up s; peak RSS (GiB; CUDA: peak allocated); the FLOP rate as a share of the
matmul peak of the row's dtype (FLOPs of the UNet calls made + the decode, counted by
torch.utils.flop_counter; not for DeepCache rows, whose shallow calls skip an unknown share);
and, with --quality (the JSON lines of experiments/sampling_study.py on a trained model), the FD-EffNet
of the row's sampler settings against that file's DDIM-50 row.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import (
    count_flops_of,
    matmul_peak,
    redraw_zero_layers,
    set_threads,
)
from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.autoencoder.model import build_autoencoder
from ldmkit.autoencoder.tiny import TinyDecoder, TinyDecoderConfig
from ldmkit.conditioning import ConditioningConfig, build_conditioner
from ldmkit.conditioning.sections import TextConfig
from ldmkit.device import pick_device
from ldmkit.diffusion.schedule import DiffusionConfig, Schedule
from ldmkit.pipeline import LatentDiffusion, LDMConfig, Pipeline
from ldmkit.unet import UNET_PRESETS, UNet

PROMPT = "a red apple on a wooden table, photograph"
GUIDANCE = 7.5
INTERVAL = (0.28, 5.42)  # Kynkaanniemi et al. 2024's interval for EDM2; SD's sigmas run 0.03 .. 14.6
SD_DIFFUSION = DiffusionConfig(schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
SD = {"ae": AutoencoderConfig(kind="kl", ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2), "unet": "sd-v1",
      "side": 512, "text_layers": 12}
QUICK = {"ae": AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 2, 4, 4), num_res_blocks=1), "unet": "tiny-crossattn",
         "side": 128, "text_layers": 1}
# name: implementation, dtype, sampler, steps, Karras sigmas, guidance interval, cache interval
ROWS = {
    "fp32-ddim50": ("ldmkit", "float32", "ddim", 50, False, None, None),
    "bf16-ddim50": ("ldmkit", "bfloat16", "ddim", 50, False, None, None),
    "bf16-dpmpp15k": ("ldmkit", "bfloat16", "dpmpp_2m", 15, True, None, None),
    "bf16-dpmpp15k-interval": ("ldmkit", "bfloat16", "dpmpp_2m", 15, True, INTERVAL, None),
    "bf16-dpmpp15k-cache3": ("ldmkit", "bfloat16", "dpmpp_2m", 15, True, None, 3),
    "bf16-dpmpp15k-interval-cache3": ("ldmkit", "bfloat16", "dpmpp_2m", 15, True, INTERVAL, 3),
    "bf16-dpmpp10k-interval-cache3": ("ldmkit", "bfloat16", "dpmpp_2m", 10, True, INTERVAL, 3),
    "bf16-dpmpp8k-interval-cache3": ("ldmkit", "bfloat16", "dpmpp_2m", 8, True, INTERVAL, 3),
    "bf16-dpmpp10k-interval-cache5": ("ldmkit", "bfloat16", "dpmpp_2m", 10, True, INTERVAL, 5),
    "bf16-dpmpp10k-interval-cache3-tiny": ("ldmkit-tiny", "bfloat16", "dpmpp_2m", 10, True, INTERVAL, 3),
    "bf16-dpmpp8k-interval-cache3-tiny": ("ldmkit-tiny", "bfloat16", "dpmpp_2m", 8, True, INTERVAL, 3),
    "fp32-dpmpp15k-interval-cache3": ("ldmkit", "float32", "dpmpp_2m", 15, True, INTERVAL, 3),
    "bf16-dpmpp15k-compile-cold": ("ldmkit-compile-cold", "bfloat16", "dpmpp_2m", 15, True, None, None),
    "bf16-dpmpp15k-compile-warm": ("ldmkit-compile-warm", "bfloat16", "dpmpp_2m", 15, True, None, None),
    "diffusers-fp32-ddim50": ("diffusers", "float32", "ddim", 50, False, None, None),
    "diffusers-bf16-cl-ddim50": ("diffusers", "bfloat16", "ddim", 50, False, None, None),
    "diffusers-bf16-cl-dpmpp15k": ("diffusers", "bfloat16", "dpmpp_2m", 15, True, None, None),
    "decode1024-fp32": ("decode", "float32", None, 0, False, None, None),
    "decode1024-bf16": ("decode", "bfloat16", None, 0, False, None, None),
}
EXTRAPOLATE = (2, 6)  # DDIM-50 rows: steps timed, then extrapolated
COMPILE_CACHE = Path("runs/benchmarks/compile-cache")  # the compiled rows' LDMKIT_COMPILE_CACHE


def config(size: dict) -> LDMConfig:
    unet = UNET_PRESETS[size["unet"]]
    text = TextConfig(encoder="bert", embed_dim=unet.context_dim, layers=size["text_layers"], max_tokens=77)
    return LDMConfig(size["ae"], unet, SD_DIFFUSION, ConditioningConfig(kind="text", text=text),
                     scale_factor=0.18215, image_size=size["side"])


def build(cfg: LDMConfig, dtype: torch.dtype) -> LatentDiffusion:
    """Random weights (zero-initialised layers re-drawn); the UNet made directly in `dtype`, so that a
    bfloat16 row never holds the float32 UNet (as loading a bfloat16 checkpoint would not)."""
    torch.manual_seed(0)
    model = LatentDiffusion.__new__(LatentDiffusion)  # LatentDiffusion.__init__'s parts, the UNet in `dtype`
    torch.nn.Module.__init__(model)
    model.config = cfg
    model.first_stage = build_autoencoder(cfg.first_stage).requires_grad_(False).eval()
    model.conditioner = build_conditioner(cfg.conditioning)
    model.schedule = Schedule.from_config(cfg.diffusion)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model.unet = UNet(cfg.unet)
    finally:
        torch.set_default_dtype(previous)
    return redraw_zero_layers(model)


def flops(cfg: LDMConfig) -> tuple[int, int]:
    """(FLOPs of one UNet row at the image size with 77 tokens, FLOPs of one decode), on meta tensors."""
    with torch.device("meta"):
        unet, stage = UNet(cfg.unet).train(), build_autoencoder(cfg.first_stage)
        side = cfg.image_size // cfg.first_stage.downsample_factor
        z = torch.zeros(1, cfg.first_stage.latent_channels, side, side)
        context = torch.zeros(1, 77, cfg.unet.context_dim)
        t = torch.full((1,), 500)
    with torch.no_grad():
        return count_flops_of(lambda: unet(z, t, context)), count_flops_of(lambda: stage.decode(z))


def peak_memory(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def run_ldmkit(row: tuple, cfg: LDMConfig, device: torch.device) -> dict:
    impl, dtype, sampler, steps, karras, interval, cache = row
    compiled = impl.startswith("ldmkit-compile")
    if impl == "ldmkit-compile-cold":
        shutil.rmtree(COMPILE_CACHE, ignore_errors=True)
    os.environ["LDMKIT_COMPILE_CACHE"] = str(COMPILE_CACHE.resolve())
    pipe = Pipeline(build(cfg, getattr(torch, dtype)), device, dtype=getattr(torch, dtype), compile=compiled)
    if impl == "ldmkit-tiny":  # TAESD's decoder (64 channels, 3-3-3-1 blocks), random weights
        pipe.use_tiny_decoder(TinyDecoder(TinyDecoderConfig()), {"path": "random TAESD-size weights"})
    rows_called = [0]
    unet = pipe._unet

    def counting(x, *a, **kw):
        rows_called[0] += x.shape[0]
        return unet(x, *a, **kw)

    pipe._unet = counting  # (DeepCache rows call the model's UNet directly: not counted)
    common = dict(condition=PROMPT, negative="", guidance=GUIDANCE, seed=0, height=cfg.image_size,
                  width=cfg.image_size)

    def image(n_steps: int, **kw):
        return lambda: pipe(steps=n_steps, sampler=sampler, karras=karras, guidance_interval=interval,
                            cache_interval=cache, **common, **kw)

    # a 1-step DDIM image; compiled rows: a 2-step image of their own sampler, whose timestep dtype (float for
    # sigma samplers, int for DDIM) the graphs are specialised to
    warm = timed(image(2) if compiled else lambda: pipe(steps=1, sampler="ddim", **common), device)
    rows_called[0] = 0
    if sampler == "ddim" and steps == 50:
        short, long = (timed(image(k), device) for k in EXTRAPOLATE)
        per_step = (long - short) / (EXTRAPOLATE[1] - EXTRAPOLATE[0])
        seconds = short + (steps - EXTRAPOLATE[0]) * per_step
        unet_rows = 2 * steps
    else:
        seconds = timed(image(steps), device)
        unet_rows = None if cache else rows_called[0]
    return {"seconds": seconds, "warmup": warm, "unet_rows": unet_rows}


def run_diffusers(row: tuple, cfg: LDMConfig, device: torch.device) -> dict:
    import diffusers
    from diffusers.utils import logging

    from ldmkit.interop.diffusers_autoencoder import diffusers_config as vae_config
    from ldmkit.interop.diffusers_scheduler import scheduler_config
    from ldmkit.interop.diffusers_unet import diffusers_config as unet_config

    logging.set_verbosity_error()
    _, dtype, sampler, steps, karras, _, _ = row
    dtype = getattr(torch, dtype)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:  # made in the dtype they run in, as ldmkit's rows
        unet_class, unet_kwargs = unet_config(cfg.unet)
        unet = getattr(diffusers, unet_class)(**unet_kwargs)
        vae_class, vae_kwargs = vae_config(cfg.first_stage, cfg.scale_factor)
        vae = getattr(diffusers, vae_class)(**vae_kwargs)
    finally:
        torch.set_default_dtype(previous)
    if dtype != torch.float32:
        unet.to(memory_format=torch.channels_last)
        vae.to(memory_format=torch.channels_last)
    schedule = scheduler_config(cfg.diffusion)
    scheduler = (diffusers.DPMSolverMultistepScheduler.from_config(schedule, use_karras_sigmas=karras)
                 if sampler == "dpmpp_2m" else diffusers.DDIMScheduler.from_config(schedule))
    pipe = diffusers.StableDiffusionPipeline(vae, None, None, unet, scheduler, safety_checker=None,
                                             feature_extractor=None, requires_safety_checker=False).to(device)
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(1, 77, cfg.unet.context_dim, generator=g).to(device, dtype)
    null = torch.randn(1, 77, cfg.unet.context_dim, generator=g).to(device, dtype)

    def image(n_steps: int):
        return lambda: pipe(prompt_embeds=cond, negative_prompt_embeds=null, height=cfg.image_size,
                            width=cfg.image_size, num_inference_steps=n_steps, guidance_scale=GUIDANCE,
                            generator=torch.Generator().manual_seed(0), output_type="pil")

    warm = timed(image(1), device)
    if sampler == "ddim" and steps == 50:
        short, long = (timed(image(k), device) for k in EXTRAPOLATE)
        seconds = short + (steps - EXTRAPOLATE[0]) * (long - short) / (EXTRAPOLATE[1] - EXTRAPOLATE[0])
    else:
        seconds = timed(image(steps), device)
    return {"seconds": seconds, "warmup": warm, "unet_rows": 2 * steps}


def run_decode(row: tuple, cfg: LDMConfig, device: torch.device) -> dict:
    """Peak memory of decoding one 2x-size image (1024 px at SD size): the Pipeline decodes in tiles."""
    from dataclasses import replace

    dtype = getattr(torch, row[1])
    small = replace(cfg, unet=replace(UNET_PRESETS["tiny-crossattn"], context_dim=cfg.unet.context_dim))
    pipe = Pipeline(build(small, dtype), device, dtype=dtype)
    side = 2 * cfg.image_size // cfg.first_stage.downsample_factor
    z = torch.randn(1, cfg.first_stage.latent_channels, side, side, generator=torch.Generator().manual_seed(0))
    warm = timed(lambda: pipe.decode(z[..., :8, :8].to(device)), device)
    return {"seconds": timed(lambda: pipe.decode(z.to(device)), device), "warmup": warm, "unet_rows": None}


def child(args) -> None:
    """One row in this process: prints its result as one JSON line."""
    set_threads(args.threads)
    device = pick_device(args.device)
    cfg = config(QUICK if args.quick else SD)
    row = ROWS[args.row]
    run = run_ldmkit if row[0].startswith("ldmkit") else {"diffusers": run_diffusers, "decode": run_decode}[row[0]]
    result = run(row, cfg, device)
    result["peak_gib"] = peak_memory(device)
    print("RESULT " + json.dumps(result), flush=True)


def quality(path: str | None, row: tuple) -> str:
    """The row's sampler settings' FD-EffNet on a trained model, from experiments/sampling_study.py's file."""
    if not path:
        return "-"
    study = {}
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        study[(r["setting"], r.get("dtype", "float32"), bool(r.get("tiny_decoder")))] = r["fd"]
    impl, dtype, sampler, steps, karras, interval, cache = row
    if not impl.startswith("ldmkit"):
        return "-"
    setting = f"{sampler}:{steps}" + (":k" if karras else "") + (f"+cache{cache}" if cache else "")
    reference = study.get(("ddim:50", "float32", False))
    fd = study.get((setting, dtype, impl == "ldmkit-tiny"))
    if fd is None or reference is None:
        return "not measured"
    note = " (interval: no guidance there)" if interval else ""
    return f"{fd:.1f} vs {reference:.1f}{note}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    p.add_argument("--quick", action="store_true", help="a small model at 128 px")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    p.add_argument("--quality", help="experiments/sampling_study.py's JSON lines on a trained model")
    p.add_argument("--out", default="runs/benchmarks/sd_cpu.json", help="JSON lines of the rows")
    p.add_argument("--row", help=argparse.SUPPRESS)  # (the child process of one row)
    args = p.parse_args()
    if args.row:
        return child(args)
    names = args.rows.split(",")
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    set_threads(args.threads)
    device = pick_device(args.device)
    cfg = config(QUICK if args.quick else SD)
    unet_flops, decode_flops = flops(cfg)
    peaks = {"float32": matmul_peak(torch.float32, device, time.perf_counter),
             "bfloat16": matmul_peak(torch.bfloat16, device, time.perf_counter)}
    print(f"{'quick model' if args.quick else 'SD v1 size'}, {cfg.image_size} px, guidance {GUIDANCE}; device {device}"
          f", {torch.get_num_threads()} threads; matmul peak fp32 {peaks['float32'] / 1e12:.2f}, bf16 "
          f"{peaks['bfloat16'] / 1e12:.2f} TFLOP/s; UNet {unet_flops / 1e9:.0f} GFLOP per row, decode "
          f"{decode_flops / 1e9:.0f} GFLOP\n", flush=True)
    print("| row | s/image | warm-up s | peak GiB | % of matmul peak | FD-EffNet (vs DDIM-50) |")
    print("|---|---|---|---|---|---|")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        command = [sys.executable, __file__, "--row", name, "--device", args.device]
        command += ["--quick"] * args.quick + (["--threads", str(args.threads)] if args.threads else [])
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            print(f"| {name} | failed: {(done.stderr.strip().splitlines() or ['?'])[-1]} |", flush=True)
            continue
        r = json.loads(lines[-1][len("RESULT "):])
        row = ROWS[name]
        share = "-" if r["unet_rows"] is None else \
            f"{100 * (r['unet_rows'] * unet_flops + decode_flops) / r['seconds'] / peaks[row[1]]:.0f}"
        print(f"| {name} | {r['seconds']:.1f} | {r['warmup']:.1f} | {r['peak_gib']:.2f} | {share} | "
              f"{quality(args.quality, row)} |", flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps({"row": name, "quick": args.quick, "device": args.device, **r}) + "\n")


if __name__ == "__main__":
    main()

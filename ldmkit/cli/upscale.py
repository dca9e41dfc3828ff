"""`ldmkit upscale IMAGE --out OUT [--model RUN] [--steps --sampler --seed --guidance --tile ...]`: super-resolution.

Any input size: inputs up to --tile LR pixels in one pass, larger ones in overlapping tiles; the
output is exactly `factor` (4) times the input. OUT is a .png file, or a folder (then
OUT/<name>_x<factor>.png).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="the low-resolution image (png, jpg, webp)")
    p.add_argument("--out", required=True, help="output .png file, or a folder")
    p.add_argument("--model", default="runs/sr-emoji64",
                   help="super-resolution LDM: run folder, checkpoint folder or model file (default: %(default)s)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--sampler", default="ddim", help="ddim, plms, ddpm, euler, euler_a, heun, dpmpp_2m")
    p.add_argument("--eta", type=float, help="DDIM / Euler-ancestral noise (DDIM default 0)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tile", type=int, default=64, help="tile side in input pixels; larger inputs are tiled")
    p.add_argument("--overlap", type=int, default=16, help="overlap of neighbouring tiles in input pixels")
    p.add_argument("--no-color-fix", action="store_true", help="do not match each tile's mean colour to its input")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA ones")
    p.add_argument("--config", help="the original YAML when --model is a CompVis .ckpt/.safetensors")
    p.add_argument("--text-encoder", metavar="CLIP_DIR", help="Stable Diffusion checkpoints: a local CLIP folder")
    p.add_argument("--device", default="auto")


def output_path(out: str, image: str, suffix: str) -> Path:
    """OUT itself when it names an image file, else OUT/<image name><suffix>.png (folders are created)."""
    path = Path(out)
    if path.suffix.lower() != ".png":
        path = path / f"{Path(image).stem}{suffix}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def run(args: argparse.Namespace) -> int:
    import ldmkit
    from ldmkit.data.images import load_rgb
    from ldmkit.pipeline.upscale import sr_factor, upscale

    image = load_rgb(args.image)
    pipe = ldmkit.load(args.model, device=args.device, use_ema=not args.no_ema, config=args.config,
                       text_encoder=args.text_encoder)
    factor = sr_factor(pipe.model)
    result = upscale(pipe, image, steps=args.steps, sampler=args.sampler, seed=args.seed, guidance=args.guidance,
                     eta=args.eta, tile=args.tile, overlap=args.overlap, color_fix=not args.no_color_fix)
    path = output_path(args.out, args.image, f"_x{factor}")
    result.save(path)
    print(f"{image.width}x{image.height} -> {result.width}x{result.height}: {path}")
    return 0

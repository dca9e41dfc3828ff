"""`ldmkit inpaint IMAGE MASK --out OUT [--model RUN] [--steps --sampler --seed ...]`: fill the white part of MASK.

MASK is an image of IMAGE's size, white (>= 50 % grey) = fill, black = keep; every kept pixel of
the output is a bit-exact copy of IMAGE's. Any size, in one pass (no tiling). OUT is a .png file,
or a folder (then OUT/<name>_inpainted.png).
"""

from __future__ import annotations

import argparse

from ldmkit.cli.upscale import output_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="the image to fill (png, jpg, webp)")
    p.add_argument("mask", help="mask image of the same size: white = fill, black = keep")
    p.add_argument("--out", required=True, help="output .png file, or a folder")
    p.add_argument("--model", default="runs/inpaint-emoji64",
                   help="inpainting LDM: run folder, checkpoint folder or model file (default: %(default)s)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--sampler", default="ddim", help="ddim, plms, ddpm, euler, euler_a, heun, dpmpp_2m")
    p.add_argument("--eta", type=float, help="DDIM / Euler-ancestral noise (DDIM default 0)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA ones")
    p.add_argument("--config", help="the original YAML when --model is a CompVis .ckpt/.safetensors")
    p.add_argument("--text-encoder", metavar="CLIP_DIR", help="Stable Diffusion checkpoints: a local CLIP folder")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    import ldmkit
    from ldmkit.data.images import load_rgb
    from ldmkit.errors import DataError
    from ldmkit.pipeline.inpaint import inpaint

    image = load_rgb(args.image)
    try:
        with Image.open(args.mask) as mask:
            mask.load()
    except (FileNotFoundError, OSError) as err:
        raise DataError(f"cannot read mask {args.mask}: {err}") from err
    pipe = ldmkit.load(args.model, device=args.device, use_ema=not args.no_ema, config=args.config,
                       text_encoder=args.text_encoder)
    result = inpaint(pipe, image, mask, steps=args.steps, sampler=args.sampler, seed=args.seed,
                     guidance=args.guidance, eta=args.eta)
    path = output_path(args.out, args.image, "_inpainted")
    result.save(path)
    print(f"filled {args.image} where {args.mask} is white: {path}")
    return 0

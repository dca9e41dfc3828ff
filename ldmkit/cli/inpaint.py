"""`ldmkit inpaint IMAGE MASK --out OUT [--model RUN] [--steps --sampler --seed ...]`: fill the white part of MASK.

MASK is an image of IMAGE's size, white (>= 50 % grey) = fill, black = keep; every kept pixel of
the output is a bit-exact copy of IMAGE's. Any size, in one pass (no tiling). OUT is a .png file,
or a folder (then OUT/<name>_inpainted.png). The PNG records the settings, the model and the
inputs (paths, sha256).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ldmkit.cli.common import (
    add_guide_and_decoder_arguments,
    add_lora_argument,
    add_model_arguments,
    add_sampling_arguments,
    load_model,
    make_folder,
    precision_note,
    sampling_options,
)
from ldmkit.cli.upscale import output_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="the image to fill (png, jpg, webp)")
    p.add_argument("mask", help="mask image of the same size: white = fill, black = keep")
    p.add_argument("--out", required=True, help="output .png file, or a folder")
    p.add_argument("--model", default="runs/inpaint-emoji64",
                   help="inpainting LDM: run folder, checkpoint folder or model file (default: %(default)s)")
    add_model_arguments(p)
    add_lora_argument(p)
    add_guide_and_decoder_arguments(p)
    add_sampling_arguments(p)
    p.add_argument("--strength", type=float, help="start from the image itself noised this far, 0 .. 1, instead of "
                                                  "from pure noise (img2img: the hole keeps some of what it holds)")


def run(args: argparse.Namespace) -> int:
    from ldmkit.data.images import load_rgb, read_image
    from ldmkit.pipeline import save_png
    from ldmkit.pipeline.conditions import check_mask_not_empty, check_mask_size
    from ldmkit.pipeline.inpaint import inpaint
    from ldmkit.pipeline.metadata import file_sha256

    image = load_rgb(args.image)
    mask = read_image(Path(args.mask), f"mask {args.mask}", convert=lambda img: img.copy())
    check_mask_size(mask.size, image.size, f"the mask {args.mask}")
    check_mask_not_empty(mask, f"the mask {args.mask}")
    path = output_path(args.out, args.image, "_inpainted")
    pipe = load_model(args, args.model)
    inputs = {name: str(Path(file).resolve()) for name, file in (("image", args.image), ("mask", args.mask))}
    inputs.update({f"{name}_sha256": file_sha256(file) for name, file in (("image", args.image), ("mask", args.mask))})
    result = inpaint(pipe, image, mask, inputs=inputs, strength=args.strength, **sampling_options(args))
    save_png(result, make_folder(path.parent) / path.name)
    print(f"filled {args.image} where {args.mask} is white: {path}{precision_note(args, pipe)}")
    return 0

"""`ldmkit upscale IMAGE --out OUT [--model RUN] [--steps --sampler --seed --guidance --tile ...]`: super-resolution.

Any input size: inputs up to --tile LR pixels in one pass, larger ones in overlapping tiles; the
output is exactly `factor` (4) times the input. OUT is a .png file, or a folder (then
OUT/<name>_x<factor>.png). The PNG records the settings, the model and the input (path, sha256).
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="the low-resolution image (png, jpg, webp)")
    p.add_argument("--out", required=True, help="output .png file, or a folder")
    p.add_argument("--model", default="runs/sr-emoji64",
                   help="super-resolution LDM: run folder, checkpoint folder or model file (default: %(default)s)")
    add_model_arguments(p)
    add_lora_argument(p)
    add_guide_and_decoder_arguments(p)
    add_sampling_arguments(p)
    p.add_argument("--tile", type=int, default=64, help="tile side in input pixels, a multiple of what the model "
                                                        "takes; larger inputs are tiled (default: %(default)s)")
    p.add_argument("--overlap", type=int, help="overlap of neighbouring tiles in input pixels, less than the tile "
                                               "(default: a quarter of the tile)")
    p.add_argument("--no-color-fix", action="store_true", help="do not match each tile's mean colour to its input")
    p.add_argument("--strength", type=float, help="start from the input's bicubic enlargement noised this far, 0 .. 1, "
                                                  "instead of from pure noise (img2img)")


def output_path(out: str, image: str, suffix: str) -> Path:
    """OUT itself when it names a .png file, else OUT/<image name><suffix>.png (its folder checked, not created);
    another image suffix (.jpg, ...) is an error: the output is a PNG, which carries the generation parameters."""
    from ldmkit.cli.common import IMAGE_FILE_SUFFIXES, output_folder
    from ldmkit.errors import ConfigError

    path = Path(out)
    if path.suffix.lower() == ".png" and not path.is_dir():
        output_folder(path.parent)
        return path
    if path.suffix.lower() in IMAGE_FILE_SUFFIXES and not path.is_dir():
        raise ConfigError(f"--out {out} names a {path.suffix} file, but the output is a PNG (it carries the "
                          f"generation parameters); give a .png file, e.g. {path.with_suffix('.png')}, or a folder")
    return output_folder(path) / f"{Path(image).stem}{suffix}.png"


def run(args: argparse.Namespace) -> int:
    from ldmkit.data.images import load_rgb
    from ldmkit.errors import ConfigError
    from ldmkit.pipeline import save_png
    from ldmkit.pipeline.metadata import file_sha256
    from ldmkit.pipeline.upscale import sr_factor, upscale

    if args.tile < 1 or args.overlap is not None and not 0 <= args.overlap < args.tile:
        raise ConfigError(f"--tile must be >= 1 and --overlap in 0 .. tile - 1 (less than the tile), got {args.tile} "
                          f"and {args.overlap}; e.g. --tile 64 --overlap 16")
    image = load_rgb(args.image)
    path = output_path(args.out, args.image, "_x4")
    pipe = load_model(args, args.model)
    factor = sr_factor(pipe.model)
    if factor != 4:
        path = path.with_name(path.name.replace("_x4.png", f"_x{factor}.png")) if args.out != str(path) else path
    inputs = {"image": str(Path(args.image).resolve()), "image_sha256": file_sha256(args.image)}
    result = upscale(pipe, image, tile=args.tile, overlap=args.overlap, color_fix=not args.no_color_fix,
                     inputs=inputs, strength=args.strength, **sampling_options(args))
    save_png(result, make_folder(path.parent) / path.name)
    print(f"{image.width}x{image.height} -> {result.width}x{result.height}: {path}{precision_note(args, pipe)}")
    return 0

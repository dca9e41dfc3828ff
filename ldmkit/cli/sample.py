"""`ldmkit sample RUN_OR_CHECKPOINT --n 16 --steps 50 --sampler ddim --seed 0 --out DIR`: generate images.

Writes one PNG per image (its generation parameters in a PNG text chunk) and `grid.png`.
`ldmkit sample --from-png IMAGE.png --out DIR` regenerates an image from those parameters.
Conditions: `--class N|NAME`, `--prompt TEXT`, `--layout boxes.json` (COCO-style), `--label-map map.png`.
"""

from __future__ import annotations

import argparse

from ldmkit.cli.common import (
    add_guide_and_decoder_arguments,
    add_lora_argument,
    add_model_arguments,
    add_sampling_arguments,
    add_shortcut_arguments,
    load_model,
    make_folder,
    output_folder,
    precision_note,
    sampling_options,
    shortcut_options,
)

# condition flag -> (its argparse dest, the kind of model it is for)
FLAG_KINDS = {"--class": ("class_", "class"), "--prompt": ("prompt", "text"), "--layout": ("layout", "layout"),
              "--label-map": ("label_map", "semantic"), "--negative-prompt": ("negative_prompt", "text"),
              "--negative-class": ("negative_class", "class")}
DEFAULTS: dict[str, object] = {}  # every option's default, to tell which ones a command line set


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", help="ldmkit run folder, checkpoint folder or model file, an original "
                                                 "CompVis .ckpt/.safetensors (with --config) or a diffusers folder")
    add_model_arguments(p)
    add_lora_argument(p)
    add_guide_and_decoder_arguments(p)
    add_sampling_arguments(p)
    add_shortcut_arguments(p)
    p.add_argument("--n", type=int, default=16, help="number of images")
    p.add_argument("--height", type=int, help="pixels (default: the training size); larger works")
    p.add_argument("--width", type=int)
    p.add_argument("--batch-size", type=int, default=8, help="images sampled at once (bounds memory)")
    p.add_argument("--out", default="outputs/samples", help="output folder")
    p.add_argument("--from-png", metavar="PNG", help="regenerate the image whose parameters this PNG carries")
    p.add_argument("--class", dest="class_", action="append", metavar="CLASS",
                   help="class-conditional models: a class index or name (repeat to cycle over several)")
    p.add_argument("--prompt", action="append", help="text-to-image models: the caption (repeat to cycle)")
    p.add_argument("--layout", metavar="JSON", help="layout-to-image models: boxes as COCO-style JSON (one layout "
                                                    "per listed image, cycled over the samples)")
    p.add_argument("--label-map", metavar="PNG", help="semantic-synthesis models: a single-channel PNG of class ids; "
                                                      "its size is the sample's (larger than training works)")
    p.add_argument("--negative-prompt", metavar="TEXT", help="text models: guide away from this caption instead of the "
                                                             "empty one (needs --guidance above 1)")
    p.add_argument("--negative-class", metavar="CLASS", help="class models: guide away from this class (index or name) "
                                                             "instead of the unconditional one (needs --guidance > 1)")
    p.add_argument("--init-image", metavar="IMG", help="img2img (SDEdit): start from this image; its size is the "
                                                       "sample's")
    p.add_argument("--strength", type=float, help="with --init-image: how much to change it, 0 (keep) .. 1 (ignore); "
                                                  "default 0.75")
    p.add_argument("--mask", metavar="IMG", help="with --init-image: change only the white part of this mask (any "
                                                 "model: the rest is blended back every step and kept exactly)")
    DEFAULTS.update({action.dest: action.default for action in p._actions})


def run(args: argparse.Namespace) -> int:
    from ldmkit.errors import ConfigError
    from ldmkit.pipeline.metadata import add_inputs, input_files

    if args.from_png:
        return regenerate(args)
    if args.checkpoint is None:
        raise ConfigError("give a CHECKPOINT (run folder, checkpoint folder or model file) or --from-png")
    condition = cli_condition(args)  # read and checked before the model loads
    init_image, mask = read_image_inputs(args.init_image, args.mask)
    out = output_folder(args.out)
    pipe = load_model(args, args.checkpoint)
    check_condition_flags(args, pipe.config.conditioning)
    images = pipe(n=args.n, height=args.height, width=args.width, batch_size=args.batch_size, condition=condition,
                  negative=args.negative_prompt or args.negative_class, init_image=init_image,
                  strength=args.strength, mask=mask, show_progress=True, **sampling_options(args),
                  **shortcut_options(args))
    inputs = input_files({"init_image": args.init_image, "mask": args.mask})
    for image in images if inputs else []:
        add_inputs(image, inputs)
    write_images(images, out, args.seed)
    print(f"wrote {len(images)} images and grid.png to {out}{precision_note(args, pipe)}")
    return 0


def read_image_inputs(init_image: str | None, mask: str | None):
    """The init image (RGB) and mask (as stored) of --init-image / --mask, read before the model loads."""
    from pathlib import Path

    from ldmkit.data.images import load_rgb, read_image

    image = load_rgb(init_image) if init_image else None
    return image, read_image(Path(mask), f"mask {mask}", convert=lambda img: img.copy()) if mask else None


def write_images(images: list, out, seed: int) -> None:
    import torch

    from ldmkit.data.images import make_grid, to_tensor
    from ldmkit.pipeline import save_png

    make_folder(out)
    for i, image in enumerate(images):
        save_png(image, out / f"{seed + i:06d}.png")
    make_grid(torch.stack([to_tensor(im) for im in images])).save(out / "grid.png")


def regenerate(args: argparse.Namespace) -> int:
    """The image a PNG's parameters describe, drawn again in the batch it was drawn in."""
    from ldmkit.errors import ConfigError
    from ldmkit.pipeline import read_params, save_png
    from ldmkit.pipeline.generate import SHORTCUTS
    from ldmkit.pipeline.metadata import check_checkpoint, from_json, recorded_input

    kept = ("from_png", "out", "device", "debug", "_module", "command")
    given = [f"--{dest.rstrip('_').replace('_', '-')}" if dest != "checkpoint" else "CHECKPOINT"
             for dest, value in vars(args).items() if dest not in kept and value != DEFAULTS.get(dest)]
    if given:
        raise ConfigError(f"--from-png takes every setting from the PNG; drop {', '.join(sorted(given))}")
    params = read_params(args.from_png)
    task = params.get("task", "sample")
    if task != "sample":
        raise ConfigError(f"{args.from_png} was written by `ldmkit {task}`; run `ldmkit {task}` again on its input "
                          f"({params.get('inputs', {})}) with the settings it records")
    out = output_folder(args.out)
    check_checkpoint(params)
    args.no_ema = not params["use_ema"]
    args.lora = recorded_lora(params)
    args.guide, args.guidance = recorded_guide(params), params["guidance"]
    args.tiny_decoder = recorded_tiny_decoder(params)
    args.config, args.text_encoder = params.get("config"), params.get("text_encoder")  # a CompVis / SD checkpoint's
    pipe = load_model(args, params["checkpoint"], params["device"] if args.device == "auto" else args.device,
                      dtype=params.get("dtype", "float32"))
    pipe.set_decode_tile(params.get("decode_tile", LEGACY_DECODE_TILE))
    seeds, index = params["batch_seeds"], params["batch_index"]
    # its own condition in every slot of a batch of the same size: an image depends only on its seed and
    # condition, and the same batch size keeps even the kernels' rounding the same
    batch = [from_json(params["condition"])] * len(seeds)
    init = {}
    if "init_image" in params:
        mask = str(recorded_input(params, "mask")) if "mask" in params else None
        init["init_image"], init["mask"] = read_image_inputs(str(recorded_input(params, "init_image")), mask)
        init["strength"] = params["strength"]
    negative = [from_json(params["negative"])] * len(seeds) if "negative" in params else None
    images = pipe(n=len(seeds), steps=params["steps"], sampler=params["sampler"], guidance=params["guidance"],
                  seed=seeds[0], eta=params["eta"], height=params["height"], width=params["width"],
                  condition=batch, batch_size=len(seeds), negative=negative, **init,
                  **{k: params[k] for k in SHORTCUTS if k in params})
    path = make_folder(out) / f"{params['seed']:06d}.png"
    save_png(images[index], path)
    print(f"regenerated: {path}")
    return 0


LEGACY_DECODE_TILE = 32  # the decode tile of images made before it was recorded (ldmkit before 2026-12-05)


def recorded_lora(params: dict) -> list[str]:
    """The --lora specs an image was made with, each checked to be the same file (sha256) as then."""
    from ldmkit.pipeline.metadata import unchanged_file

    return [f"{unchanged_file(item['file'], item['sha256'], 'the LoRA')}:{item['weight']!r}"
            for item in params.get("lora", [])]


def recorded_guide(params: dict) -> str | None:
    """The guide model an image was made with (autoguidance), checked to be the same file (sha256) as then."""
    from ldmkit.pipeline.metadata import unchanged_file

    guide = params.get("guide")
    return unchanged_file(guide["checkpoint"], guide["sha256"], "the guide model") if guide else None


def recorded_tiny_decoder(params: dict) -> str | None:
    """The tiny decoder an image was decoded with, checked to be the same weights (sha256) as then."""
    from ldmkit.pipeline.metadata import unchanged_file

    tiny = params.get("tiny_decoder")
    if tiny is None:
        return None
    unchanged_file(tiny["file"], tiny["sha256"], "the tiny decoder")
    return tiny["path"]


def check_condition_flags(args: argparse.Namespace, cfg) -> None:
    """A condition flag for another kind of model is an error that says what this model takes."""
    from ldmkit.pipeline.conditions import check_kinds

    check_kinds(cfg, {flag: kind for flag, (dest, kind) in FLAG_KINDS.items() if getattr(args, dest)})


def cli_condition(args: argparse.Namespace):
    """The condition of --class, --prompt, --layout (layout dicts) or --label-map ((H, W) ids), else None."""
    from ldmkit.errors import ConfigError

    given = [flag for flag, value in (("--class", args.class_), ("--prompt", args.prompt), ("--layout", args.layout),
                                      ("--label-map", args.label_map)) if value]
    if len(given) > 1:
        raise ConfigError(f"give one kind of condition, not {' and '.join(given)}")
    for values in (args.class_, args.prompt):
        if values:
            return values[0] if len(values) == 1 else [values[i % len(values)] for i in range(args.n)]
    if args.layout:
        from ldmkit.data.coco import read_layouts

        layouts = read_layouts(args.layout)
        return layouts[0] if len(layouts) == 1 else [layouts[i % len(layouts)] for i in range(args.n)]
    if args.label_map:
        from ldmkit.data.label_maps import read_label_map

        return read_label_map(args.label_map)
    return None

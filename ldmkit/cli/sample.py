"""`ldmkit sample RUN_OR_CHECKPOINT --n 16 --steps 50 --sampler ddim --seed 0 --out DIR`: generate images.

Writes one PNG per image (its generation parameters in a PNG text chunk) and `grid.png`.
`ldmkit sample --from-png IMAGE.png --out DIR` regenerates an image from those parameters.
Conditions: `--class N|NAME`, `--prompt TEXT`, `--layout boxes.json` (COCO-style), `--label-map map.png`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", help="ldmkit run folder, checkpoint folder or model file, an original "
                                                 "CompVis .ckpt/.safetensors (with --config) or a diffusers folder")
    p.add_argument("--config", help="the original YAML of a CompVis checkpoint")
    p.add_argument("--text-encoder", metavar="CLIP_DIR", help="Stable Diffusion checkpoints: a local CLIP folder")
    p.add_argument("--n", type=int, default=16, help="number of images")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--sampler", default="ddim", help="ddim, plms, ddpm, euler, euler_a, heun, dpmpp_2m")
    p.add_argument("--eta", type=float, help="DDIM / Euler-ancestral noise (DDIM default 0)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="image i gets seed + i")
    p.add_argument("--height", type=int, help="pixels (default: the training size); larger works")
    p.add_argument("--width", type=int)
    p.add_argument("--batch-size", type=int, default=8, help="images sampled at once (bounds memory)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA ones")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="outputs/samples", help="output folder")
    p.add_argument("--from-png", metavar="PNG", help="regenerate the image whose parameters this PNG carries")
    p.add_argument("--class", dest="class_", action="append", metavar="CLASS",
                   help="class-conditional models: a class index or name (repeat to cycle over several)")
    p.add_argument("--prompt", action="append", help="text-to-image models: the caption (repeat to cycle)")
    p.add_argument("--layout", metavar="JSON", help="layout-to-image models: boxes as COCO-style JSON (one layout "
                                                    "per listed image, cycled over the samples)")
    p.add_argument("--label-map", metavar="PNG", help="semantic-synthesis models: a single-channel PNG of class ids; "
                                                      "its size is the sample's (larger than training works)")


def run(args: argparse.Namespace) -> int:
    import ldmkit
    from ldmkit.data.images import make_grid, to_tensor
    from ldmkit.errors import LdmkitError
    from ldmkit.pipeline import read_params, save_png

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_png:
        params = read_params(args.from_png)
        pipe = ldmkit.load(params["checkpoint"], device=params["device"] if args.device == "auto" else args.device,
                           use_ema=params["use_ema"], config=args.config, text_encoder=args.text_encoder)
        seeds = params["batch_seeds"]
        images = pipe(n=len(seeds), steps=params["steps"], sampler=params["sampler"], guidance=params["guidance"],
                      seed=seeds[0], eta=params["eta"], height=params["height"], width=params["width"],
                      condition=params["condition"], batch_size=len(seeds))
        image = images[params["batch_index"]]
        path = out / f"{params['seed']:06d}.png"
        save_png(image, path)
        print(f"regenerated: {path}")
        return 0
    if args.checkpoint is None:
        raise LdmkitError("give a CHECKPOINT (run folder, checkpoint folder or model file) or --from-png")
    pipe = ldmkit.load(args.checkpoint, device=args.device, use_ema=not args.no_ema, config=args.config,
                       text_encoder=args.text_encoder)
    images = pipe(n=args.n, steps=args.steps, sampler=args.sampler, guidance=args.guidance, seed=args.seed,
                  eta=args.eta, height=args.height, width=args.width, batch_size=args.batch_size,
                  condition=cli_condition(args), show_progress=True)
    for i, image in enumerate(images):
        save_png(image, out / f"{args.seed + i:06d}.png")
    import torch

    make_grid(torch.stack([to_tensor(im) for im in images])).save(out / "grid.png")
    print(f"wrote {len(images)} images and grid.png to {out}")
    return 0


def cli_condition(args: argparse.Namespace):
    """The raw condition of --class, --prompt, --layout (layout dicts) or --label-map ((H, W) ids), else None."""
    from ldmkit.errors import LdmkitError

    given = [flag for flag, value in (("--class", args.class_), ("--prompt", args.prompt), ("--layout", args.layout),
                                      ("--label-map", args.label_map)) if value]
    if len(given) > 1:
        raise LdmkitError(f"give one kind of condition, not {' and '.join(given)}")
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

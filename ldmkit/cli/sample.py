"""`ldmkit sample RUN_OR_CHECKPOINT --n 16 --steps 50 --sampler ddim --seed 0 --out DIR`: generate images.

Writes one PNG per image (its generation parameters in a PNG text chunk) and `grid.png`.
`ldmkit sample --from-png IMAGE.png --out DIR` regenerates an image from those parameters.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", help="ldmkit run folder, checkpoint folder or model file")
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
                           use_ema=params["use_ema"])
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
    pipe = ldmkit.load(args.checkpoint, device=args.device, use_ema=not args.no_ema)
    images = pipe(n=args.n, steps=args.steps, sampler=args.sampler, guidance=args.guidance, seed=args.seed,
                  eta=args.eta, height=args.height, width=args.width, batch_size=args.batch_size,
                  show_progress=True)
    for i, image in enumerate(images):
        save_png(image, out / f"{args.seed + i:06d}.png")
    import torch

    make_grid(torch.stack([to_tensor(im) for im in images])).save(out / "grid.png")
    print(f"wrote {len(images)} images and grid.png to {out}")
    return 0

"""The floor of the main job's FD-EffNet: what real images and a first stage's reconstructions score.

`ldmkit eval RUN/ldm --n 200` compares 200 samples with the 3540 training images. A perfect LDM draws
training-like images, decoded by its first stage, so no sample set can score better than

- real: n real images (a fixed random subset of the training split, or the validation split), and
- reconstructed: the same images encoded and decoded by the first stage,

with the same protocol (EfficientNet-Lite0 features, n images against the training statistics). The
gap between the two is the first stage's share of a sample FD; an LDM's FD above `reconstructed`
is its own.

    python experiments/fd_floor.py --first-stage runs/emoji-new/autoencoder --n 200
"""

from __future__ import annotations

import argparse
import json

import torch
from _fd_measure import Judge  # experiments/_fd_measure.py
from _runs import batches  # experiments/_runs.py

from ldmkit.autoencoder.checkpoint import load_autoencoder
from ldmkit.data.openmoji import OpenMojiDataset
from ldmkit.device import pick_device
from ldmkit.evaluation.autoencoder import reconstruct


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--first-stage", required=True, help="autoencoder run or checkpoint, e.g. runs/emoji/autoencoder")
    p.add_argument("--n", type=int, default=200, help="images per set (eval's --n)")
    p.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val"])
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    judge = Judge.of_split("train", device)
    stage = load_autoencoder(args.first_stage).to(device).eval()
    rows = []
    for split in args.splits:
        dataset = OpenMojiDataset(64, split)
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:args.n].tolist()
        x = torch.stack([dataset[i]["image"] for i in order])  # (n, 3, 64, 64) in [-1, 1]
        rec = torch.cat([reconstruct(stage, x[s].to(device)).cpu() for s in batches(len(x), 32)])
        for kind, images in (("real", x), ("reconstructed", rec)):
            scores = judge.scores(judge.features(images))
            rows.append({"split": split, "images": kind, "n": len(x), **scores})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| images | FD-EffNet | KID | precision | recall |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} {r['split']} images, {r['images']} | {r['fd']:.1f} | {r['kid']:.3f} | "
              f"{r['precision']:.3f} | {r['recall']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

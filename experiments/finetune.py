"""Fine-tuning the main job's model onto one OpenMoji class: in full, and with LoRA at two ranks.

    python experiments/finetune.py --base runs/emoji/ldm --minutes 3 --out runs/finetune

Each way trains for the same --minutes (`train.max_minutes`) from the same base model, on the
class's training images only (`data.classes`), with the shipped config's recipe (LoRA: the adapters
only, on the attention projections, at --lora-lr). Scored before and after by `ldmkit eval` with
--n samples (DDPM, 200 steps, seed 0) against that class's images (its training and validation
images: its validation split alone, 15 images for food & drink, is too few for a covariance of
1280 features), exported once as PNGs. Also reported: what each run trained (images/s, steps), its
peak resident memory (the training process's, by /usr/bin/time -f %M), and the size of what it writes (the
adapter alone for LoRA). A grid of 8 samples per model (same seeds) goes to OUT/grid.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

LDMKIT = [sys.executable, "-m", "ldmkit"]
CONFIG = "configs/ldm/emoji64-kl-f4.yaml"


def ldmkit(*argv: str) -> None:
    subprocess.run([*LDMKIT, *map(str, argv)], check=True)


def export_class(name: str, folder: Path) -> int:
    from ldmkit.data.images import to_pil
    from ldmkit.data.openmoji import OpenMojiDataset

    if not folder.is_dir():
        folder.mkdir(parents=True)
        for split in ("train", "val"):
            data = OpenMojiDataset(64, split, classes=(name,))
            for i in range(len(data)):
                to_pil(data[i]["image"]).save(folder / f"{split}-{i:04d}.png")
    return len(list(folder.glob("*.png")))


def train(way: str, args, out: Path) -> dict:
    run = out / way
    sets = [f"data.classes=[{args.cls}]", f"train.max_minutes={args.minutes}", "train.steps=1000000",
            "train.ckpt_every=1000000", "train.image_every=1000000", "train.log_every=10"]
    if way.startswith("lora"):
        sets += [f"lora.rank={way[4:]}", f"train.lr={args.lora_lr}"]
    if not (run / "checkpoints").is_dir():  # /usr/bin/time -f %M: the training process's peak resident KiB
        done = subprocess.run(["/usr/bin/time", "-f", "%M", *LDMKIT, "train", CONFIG, "--init-from", args.base,
                               "--out", str(run), *[x for s in sets for x in ("--set", s)]],
                              check=True, stderr=subprocess.PIPE, text=True)
        peak = int(done.stderr.strip().splitlines()[-1])
        (run / "peak_rss_kib.json").write_text(json.dumps({"peak_rss_kib": peak}))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    from ldmkit.checkpoint import latest_checkpoint

    model_file = latest_checkpoint(run) / "model.safetensors"
    return {"way": way, "steps": rows[-1]["step"], "images_per_second": round(
        sorted(r["images_per_second"] for r in rows[1:])[len(rows[1:]) // 2], 1),
            "written_mb": round(model_file.stat().st_size / 2**20, 3),
            "peak_rss_gib": round(json.loads((run / "peak_rss_kib.json").read_text())["peak_rss_kib"] / 2**20, 2)}


def evaluate(model: Path, ref: Path, args, out: Path) -> dict:
    target = out / f"eval-{model.name}"
    if not (target / "metrics.json").is_file():
        ldmkit("eval", model, "--ref", ref, "--ref-split", "all", "--n", args.n, "--sampler", "ddpm", "--steps", 200,
               "--batch-size", 50, "--seed", 0, "--out", target)
    metrics = json.loads((target / "metrics.json").read_text())
    return {"fd_effnet": round(metrics["FD-EffNet"], 1), "kid_effnet": round(metrics["KID-EffNet"], 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="the main job's LDM run (runs/emoji/ldm)")
    p.add_argument("--cls", default="food & drink", help="the OpenMoji class to fine-tune onto")
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--lora-lr", type=float, default=1e-3)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--out", default="runs/finetune")
    args = p.parse_args()
    out = Path(args.out)
    ref = out / "reference"
    print(f"reference: {export_class(args.cls, ref)} images of {args.cls!r}", flush=True)
    rows = [{"way": "base", **evaluate(Path(args.base), ref, args, out),
             "written_mb": round(sum(f.stat().st_size for f in Path(args.base).rglob("model.safetensors"))
                                 / max(1, len(list(Path(args.base).rglob("model.safetensors")))) / 2**20, 3)}]
    merged = {}
    for way in ("full", "lora4", "lora16"):
        row = train(way, args, out)
        model = out / way
        if way.startswith("lora"):
            merged[way] = model = out / f"{way}-merged"
            if not (model / "model.safetensors").is_file():
                ldmkit("merge-lora", args.base, out / way, "--out", model)
        rows.append({**row, **evaluate(model, ref, args, out)})
        print(json.dumps(rows[-1]), flush=True)
    (out / "finetune.json").write_text(json.dumps(rows, indent=1) + "\n")
    grid(args, out)
    print("\n| model | FD-EffNet | KID | steps | img/s | written | peak RSS |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['way']} | {r['fd_effnet']} | {r['kid_effnet']} | {r.get('steps', '-')} | "
              f"{r.get('images_per_second', '-')} | {r['written_mb']} MB | {r.get('peak_rss_gib', '-')} GiB |")


def grid(args, out: Path) -> None:
    import ldmkit
    from ldmkit.data.images import make_grid, to_tensor

    rows = []
    models = ((args.base, None), (out / "full", None), (args.base, out / "lora4"), (args.base, out / "lora16"))
    for model, lora in models:
        pipe = ldmkit.load(model, device="cpu", lora=None if lora is None else [lora])
        rows += [to_tensor(im) for im in pipe(n=8, steps=200, sampler="ddpm", seed=0)]
    make_grid(torch.stack(rows), nrow=8).save(out / "grid.png")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()

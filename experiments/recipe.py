"""Training recipes for the main job's LDM at equal training time, and diffusers' usual recipe beside them.

    python experiments/recipe.py --first-stage runs/emoji/autoencoder --minutes 4 --recipes base,cosine,v
    python experiments/recipe.py --first-stage runs/emoji/autoencoder --minutes 4 --recipes diffusers

Every recipe trains the unconditional LDM of configs/ldm/emoji64-kl-f4.yaml on the same cached latents
of the same first stage, for the same training time. The time is made equal in steps, so that a row
does not depend on what else the machine does while it trains: each recipe first trains
--probe-steps steps to measure its own images/s (a quiet machine is assumed for that minute), and
then trains minutes x 60 x images/s / batch steps from scratch (its cosine schedule, if any, spans
exactly those). Recipes that differ only in what does not change the cost of a step (learning rate,
schedule, prediction, loss weighting, EMA) share one probe, so they train for the same steps.
Each trained model is then scored with one fixed protocol: `ldmkit eval RUN
--n 200 --sampler ddpm --steps 200 --seed 0` (FD-EffNet etc. against the 3540 training images).

The "diffusers" recipe is what a user of diffusers' `train_unconditional` example gets on the same
latents: `UNet2DModel` at a comparable parameter count (DownBlock2D / AttnDownBlock2D at the two
lower levels, as ldmkit's UNet), `DDPMScheduler` with the linear beta schedule (1e-4 .. 0.02),
eps-prediction, AdamW at 1e-4 (betas 0.95, 0.999, weight decay 1e-6, warm-up 500 steps then cosine,
the example's defaults) and diffusers' EMAModel (decay 0.9999 with warm-up, inv_gamma 1, power 3/4),
trained by its own loop, then converted to ldmkit and scored by the same protocol.
Results: a Markdown table and RUNS/recipes.json (one row per recipe, appended).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _recipes import RECIPES, diffusers_recipe  # noqa: E402  (experiments/_recipes.py)

from ldmkit.checkpoint import latest_checkpoint  # noqa: E402
from ldmkit.cli import main as ldmkit  # noqa: E402
from ldmkit.config import load_config  # noqa: E402
from ldmkit.training.ldm import LDMRunConfig  # noqa: E402

CONFIG = "configs/ldm/emoji64-kl-f4.yaml"
NEVER = 1_000_000_000


def run_ldmkit(name: str, overrides: list[str], args) -> tuple[Path, float]:
    """Train recipe `name` for the budget (in steps from its measured images/s); (run folder, img/s)."""
    base = [f"first_stage={args.first_stage}", *overrides, f"train.ckpt_every={NEVER}", f"train.image_every={NEVER}",
            "train.log_every=10"]
    run, probe = Path(args.runs) / name, Path(args.runs) / f"probe-{compute_key(overrides)}"
    if (run / "budget.json").is_file() and latest_checkpoint(run) is not None:
        return run, json.loads((run / "budget.json").read_text())["images_per_second"]
    if latest_checkpoint(probe) is None:
        check(ldmkit(["train", CONFIG, "--out", str(probe), *sets(base + [f"train.steps={args.probe_steps}"])]))
    rows = [json.loads(line) for line in (probe / "metrics.jsonl").read_text().splitlines()]
    rate = sorted(r["images_per_second"] for r in rows[1:])[len(rows[1:]) // 2]  # median, after the first log
    batch = load_config(LDMRunConfig, probe / "config.yaml").train.batch_size
    steps = max(1, round(args.minutes * 60 * rate / batch))
    print(f"[{name}] {rate:.1f} img/s measured: {steps} steps of {batch} = {args.minutes:g} min", flush=True)
    check(ldmkit(["train", CONFIG, "--out", str(run), *sets(base + [f"train.steps={steps}"])]))
    budget = {"images_per_second": rate, "steps": steps, "batch": batch, "minutes": args.minutes}
    (run / "budget.json").write_text(json.dumps(budget) + "\n")
    return run, rate


def compute_key(overrides: list[str]) -> str:
    """What decides a recipe's images/s (the UNet, batch size and precision): recipes that agree on it share
    one throughput probe, so they train for the same number of steps."""
    keys = sorted(o for o in overrides if o.startswith(("unet.", "train.batch_size=", "train.precision=")))
    return hashlib.sha1("\n".join(keys).encode()).hexdigest()[:10]


def sets(overrides: list[str]) -> list[str]:
    return [part for o in overrides for part in ("--set", o)]


def check(code: int) -> None:
    if code != 0:
        raise SystemExit(f"ldmkit failed with exit code {code}")


def evaluate(run: Path, args) -> dict:
    out = run / "eval-protocol"
    if not (out / "metrics.json").is_file():
        check(ldmkit(["eval", str(run), "--n", str(args.fd_samples), "--sampler", "ddpm", "--steps", "200",
                      "--batch-size", "50", "--seed", "0", "--dtype", "float32", "--out", str(out)]))
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--first-stage", required=True, help="the main job's autoencoder run (runs/emoji/autoencoder)")
    p.add_argument("--minutes", type=float, default=4.0, help="training time of every recipe")
    p.add_argument("--recipes", default="base", help=f"comma-separated, of: diffusers, {', '.join(RECIPES)}")
    p.add_argument("--runs", default="runs/recipes")
    p.add_argument("--probe-steps", type=int, default=60)
    p.add_argument("--fd-samples", type=int, default=200)
    args = p.parse_args()
    torch.set_num_threads(2)
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.recipes.split(","):
        start = time.perf_counter()
        if name == "diffusers":
            run, rate = diffusers_recipe(args)
        else:
            run, rate = run_ldmkit(name, RECIPES[name], args)
        metrics = evaluate(run, args)
        row = {"recipe": name, "minutes": args.minutes, "images_per_second": round(rate, 1),
               "fd_effnet": round(metrics["FD-EffNet"], 1), "kid_effnet": round(metrics["KID-EffNet"], 4),
               "precision": round(metrics["precision-EffNet"], 3), "recall": round(metrics["recall-EffNet"], 3),
               "overrides": RECIPES.get(name, ["diffusers train_unconditional"]),
               "wall_minutes": round((time.perf_counter() - start) / 60, 1)}
        rows.append(row)
        with open(Path(args.runs) / "recipes.json", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    print("\n| recipe | img/s | FD-EffNet | KID | precision | recall |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['recipe']} | {r['images_per_second']} | {r['fd_effnet']} | {r['kid_effnet']} | "
              f"{r['precision']} | {r['recall']} |")


if __name__ == "__main__":
    main()

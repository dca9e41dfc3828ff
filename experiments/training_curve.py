"""FD-EffNet of one run's kept checkpoints against its training time: the main job's curve.

    python experiments/training_curve.py runs/ag/ldm --steps 200 400 600 800 1000 1200 1400 \
        --seconds-per-step 0.182 --guide runs/ag/ldm/checkpoints/step-00000200 --out runs/curve-main.json \
        --plot docs/results/curve-main.png

Each checkpoint RUN/checkpoints/step-N samples --n images (seeds 0 .. n-1, --sampler, --sampler-steps)
unguided and, with --guide, autoguided at --guidance (checkpoints at or before the guide's step are
only sampled unguided); FD-EffNet against the training split, as `ldmkit eval` computes it. Training
minutes are N x --seconds-per-step: the rate of a quiet run of the same config (a run trained beside
other work, as the one with every checkpoint kept may be, has slower steps but the same weights).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _fd_measure import Judge, join  # experiments/_fd_measure.py
from _runs import batches  # experiments/_runs.py

import ldmkit


@torch.no_grad()
def fd(pipe, judge: Judge, args, guidance: float) -> dict:
    parts = []
    for s in batches(args.n, args.batch):
        z = pipe.latents(list(range(s.start, s.stop)), steps=args.sampler_steps, sampler=args.sampler,
                         guidance=guidance)
        parts.append(judge.features(pipe.decode(z)))
    return judge.scores(join(parts))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="LDM run folder whose checkpoints are kept (train.keep_steps or keep_last)")
    p.add_argument("--steps", type=int, nargs="+", required=True, help="the checkpoints' training steps")
    p.add_argument("--seconds-per-step", type=float, required=True, help="a quiet run's training seconds per step")
    p.add_argument("--guide", help="autoguidance: this weaker model guides each later checkpoint too")
    p.add_argument("--guide-step", type=int, default=0, help="the guide's own step (no autoguidance up to it)")
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--sampler", default="euler_a")
    p.add_argument("--sampler-steps", type=int, default=30)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--out", required=True, help="JSON lines (appended)")
    p.add_argument("--plot", help="PNG of FD against training minutes")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    judge = Judge.of_split("train", torch.device("cpu"))
    for step in args.steps:
        checkpoint = Path(args.run) / "checkpoints" / f"step-{step:08d}"
        guided = args.guide is not None and step > args.guide_step
        pipe = ldmkit.load(checkpoint, device="cpu", dtype="float32", guide=args.guide if guided else None)
        for guidance in [1.0] + ([args.guidance] if guided else []):
            row = {"step": step, "minutes": step * args.seconds_per_step / 60, "sampler": args.sampler,
                   "sampler_steps": args.sampler_steps, "guidance": guidance,
                   "guide": args.guide if guidance != 1.0 else None, **fd(pipe, judge, args, guidance)}
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"step {step:5d} ({row['minutes']:.1f} min) guidance {guidance:g}: FD {row['fd']:.1f}", flush=True)
    if args.plot:
        plot([json.loads(line) for line in Path(args.out).read_text().splitlines()], args.plot)
    return 0


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for guided, label in ((False, "unguided"), (True, "autoguided")):
        points = sorted((r for r in rows if (r["guidance"] != 1.0) == guided), key=lambda r: r["minutes"])
        if points:
            ax.plot([r["minutes"] for r in points], [r["fd"] for r in points], marker="o",
                    label=f"{label} ({points[0]['sampler']} {points[0]['sampler_steps']})")
    ax.set(xlabel="LDM training time (min, 2 CPU cores)", ylabel="FD-EffNet (lower is better)",
           title="The main job's LDM: FD against training time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())

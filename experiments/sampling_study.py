"""Sample quality against sampling time: every sampler at several step counts, and the shortcuts.

    python experiments/sampling_study.py runs/emoji/ldm --out docs/results/sampling-main.json
    python experiments/sampling_study.py runs/class-emoji64 --guidance 3 --condition-from-data --out ...

For each setting, FD-EffNet (and KID, precision, recall) of --n samples (seeds 0 .. n-1) against the
training split, as `ldmkit eval` computes them, and the seconds per image of sampling + decoding
(the feature network not counted), measured on this machine with --threads threads. Settings:
    SAMPLER:STEPS[:k]           e.g. ddpm:200, ddim:50, euler_a:30, dpmpp_2m:20:k (k: Karras levels)
    +eta1                       DDIM with eta 1
    +cacheK                     DeepCache-style feature reuse every K calls
    +intervalLO-HI              guidance only for sigma in (LO, HI]
--guide MODEL makes --guidance autoguidance by MODEL (a weaker model of the same latent space).
--tiny-decoder FILE decodes with that tiny decoder (experiments/tiny_decoder.py) instead of the first stage's.
Writes JSON lines (one per setting and --dtype, appended: a rerun skips the ones already there) and, with
--plot, a plot of FD against s/img.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fd_measure import Judge, join  # noqa: E402  (experiments/_fd_measure.py)

import ldmkit  # noqa: E402
from ldmkit.evaluation.generation import DataConditions  # noqa: E402
from ldmkit.evaluation.reference import reference_dataset  # noqa: E402

DEFAULT = ("ddpm:200 ddpm:100 ddpm:50 ddim:200 ddim:50 ddim:20 ddim:50+eta1 ddim:20+eta1 plms:50 plms:20 "
           "euler:50 euler:20 euler_a:100 euler_a:50 euler_a:20 heun:25 heun:10 dpmpp_2m:50 dpmpp_2m:20 "
           "dpmpp_2m:20:k dpmpp_2m:10:k euler_a:50:k euler_a:20:k")


def parse(setting: str) -> dict:
    head, *mods = setting.split("+")
    sampler, steps, *k = head.split(":")
    opts = {"sampler": sampler, "steps": int(steps), "karras": bool(k)}
    for mod in mods:
        if mod.startswith("eta"):
            opts["eta"] = float(mod[3:])
        elif mod.startswith("cache"):
            opts["cache_interval"] = int(mod[5:])
        elif mod.startswith("interval"):
            low, high = mod[8:].split("-")
            opts["guidance_interval"] = (float(low), float(high))
        else:
            raise SystemExit(f"unknown setting modifier {mod!r} in {setting!r}")
    return opts


@torch.no_grad()
def measure(pipe, judge: Judge, opts: dict, n: int, batch: int, guidance: float, conditions) -> dict:
    seconds, parts = 0.0, []
    for start in range(0, n, batch):
        seeds = list(range(start, min(n, start + batch)))
        cond = conditions(seeds) if conditions is not None else None
        t0 = time.perf_counter()
        images = pipe.decode(pipe.latents(seeds, cond, guidance=guidance, **opts))
        seconds += time.perf_counter() - t0
        parts.append(judge.features(images))
    return {**judge.scores(join(parts)), "seconds_per_image": seconds / n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--settings", default=DEFAULT, help="space-separated settings (see above)")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--guide", help="autoguidance: this weaker model guides (--guidance is then its strength)")
    p.add_argument("--tiny-decoder", help="decode with this tiny decoder instead of the model's first stage")
    p.add_argument("--condition-from-data", action="store_true", help="conditions of random training images")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="the Pipeline's precision")
    p.add_argument("--out", required=True, help="JSON lines file (appended)")
    p.add_argument("--plot", help="PNG of FD against s/img")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pipe = ldmkit.load(args.model, device="cpu", dtype=args.dtype, guide=args.guide, tiny_decoder=args.tiny_decoder)
    judge = Judge.of_split("train", pipe.device, pipe.config.image_size)
    conditions = None
    if args.condition_from_data:
        conditions = DataConditions(reference_dataset("openmoji", pipe.config.image_size, "train")[0], pipe)
    out = Path(args.out)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.is_file() else []
    done = {(r["setting"], r.get("dtype", "float32"), r.get("guide"), r["guidance"], r.get("tiny_decoder"))
            for r in rows}
    for setting in args.settings.split():
        if (setting, args.dtype, args.guide, args.guidance, args.tiny_decoder) in done:
            continue
        row = {"setting": setting, "dtype": args.dtype, "model": args.model, "n": args.n, "guidance": args.guidance,
               "guide": args.guide, "tiny_decoder": args.tiny_decoder,
               **measure(pipe, judge, parse(setting), args.n, args.batch, args.guidance, conditions)}
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{setting:24s} {args.dtype:8s} FD {row['fd']:7.1f}  KID {row['kid']:.4f}  "
              f"{row['seconds_per_image']:.3f} s/img", flush=True)
    if args.plot:  # the float32 rows (bfloat16 ones are the precision's cost, in the table)
        plot([r for r in map(json.loads, out.read_text().splitlines()) if r.get("dtype", "float32") == "float32"],
             args.plot)


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    by_sampler: dict[str, list[dict]] = {}
    for r in rows:
        by_sampler.setdefault(r["setting"].split(":")[0] + ("+k" if ":k" in r["setting"] else "")
                              + "".join("+" + m.rstrip("0123456789.-") for m in r["setting"].split("+")[1:])
                              + (f" autoguided {r['guidance']:g}" if r.get("guide") else ""),
                              []).append(r)
    for name, rs in sorted(by_sampler.items()):
        rs = sorted(rs, key=lambda r: r["seconds_per_image"])
        ax.plot([r["seconds_per_image"] for r in rs], [r["fd"] for r in rs], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("seconds per image (sampling + decoding, 2 CPU cores)")
    ax.set_ylabel("FD-EffNet (lower is better)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()

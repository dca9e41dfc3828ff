"""The paper's central claims at small scale: 64 px OpenMoji, CPU, equal wall-clock budgets.

Parts (`--parts`, default all; `report` alone only rebuilds the report):
  recon     Tab. 8 analogue: the first stage of every f (KL autoencoders f = 2, 4, 8, 16, each trained for
            --ae-minutes unless its run already has them; --ae-f4 reuses a trained KL-f4) on the 413
            validation images: PSNR, SSIM, perceptual distance, rFD/rKID (reconstructions vs originals).
  fig6      Fig. 6 analogue: LDM-f for f in --fs, one UNet for all (experiments/_budgeted_runs.py), each
            trained for --ldm-minutes and stopped for a checkpoint at --checkpoints evenly spaced times;
            FD-EffNet and KID of --fd-samples samples (--sampler, --fd-steps) at every checkpoint.
  fig7      Fig. 7 analogue: each final LDM-f, FD-EffNet against sampling throughput (sampler + decoder,
            images/s) for --sampler steps --fig7-steps.
  samplers  FD against steps for DDIM, PLMS, DPM-Solver++(2M) and Euler ancestral on the final LDM-4 (--sampler-f).
  guidance  FD against the classifier-free guidance scale of the class-conditional model --class-run.
Samples are compared with the 64 px training split (cached EfficientNet-Lite0 statistics; FD-EffNet is
not FID). Each part writes JSON under --runs; every invocation ends by rebuilding --report-dir/REPORT.md
and its plots from whatever JSONs exist, so parts run in separate processes give one report.

The full run: two processes of one thread each, each training the first stages it needs; LDM-1 (pixel
space: ~50 ms per image and DDIM step here) needs more sampling time than the four latent models, so it
shares a process with f = 8 and the guidance part only (about 65-70 min each, measured costs):
    OMP_NUM_THREADS=1 python experiments/paper_claims.py --parts recon fig6 fig7 guidance --fs 1 8
    OMP_NUM_THREADS=1 python experiments/paper_claims.py --parts recon fig6 fig7 samplers --fs 2 4 16
`--estimate-only` times one batch of every model and prints the plan without running it.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
from _budgeted_runs import (
    FACTORS,
    checkpoint_at,
    first_stage_spec,
    ldm_run,
    untrained_ldm,
)
from _claims_parts import (
    SAMPLER_NAMES,
    part_fig6,
    part_fig7,
    part_floor,
    part_guidance,
    part_recon,
    part_samplers,
)
from _claims_report import write_report
from _fd_measure import FEATURE_BATCH, Judge, measure_cost
from _runs import command_line  # experiments/_runs.py

import ldmkit
from ldmkit.checkpoint import resolve_model_file
from ldmkit.device import pick_device
from ldmkit.errors import LdmkitError
from ldmkit.evaluation import build_feature_network, image_features
from ldmkit.pipeline.generate import Pipeline
from ldmkit.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS

PARTS = ("recon", "fig6", "fig7", "samplers", "guidance")


def arguments() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=[*PARTS, "report"])
    p.add_argument("--fs", nargs="+", type=int, default=list(FACTORS), choices=FACTORS,
                   help="downsampling factors for recon, fig6 and fig7 (f = 1: pixel space)")
    p.add_argument("--runs", default="runs/paper-claims", help="folder of the runs and the parts' JSON files")
    p.add_argument("--report-dir", default="docs/results", help="where REPORT.md and the plots go")
    p.add_argument("--ae-minutes", type=float, default=5.0, help="training budget of every first stage")
    p.add_argument("--ae-f4", help="reuse this trained KL-f4 (e.g. runs/kl-f4-emoji64) instead of training one "
                                   "for --ae-minutes (its budget then differs from the other f)")
    p.add_argument("--ldm-minutes", type=float, default=8.0, help="training budget of every LDM")
    p.add_argument("--checkpoints", type=int, default=4, help="evaluated checkpoints per LDM, evenly spaced in time")
    p.add_argument("--fd-samples", type=int, default=200, help="samples per FD (fig6, samplers, guidance)")
    p.add_argument("--sampler", default=DEFAULT_SAMPLER, help="sampler of fig6, fig7 and guidance (default: "
                   "%(default)s, ldmkit's default; ddim was the first report's)")
    p.add_argument("--fd-steps", type=int, default=DEFAULT_STEPS, help="sampler steps of fig6")
    p.add_argument("--fig7-steps", nargs="+", type=int, default=[10, 20, 30, 50, 100])
    p.add_argument("--fig7-samples", type=int, default=64, help="samples per FD of fig7 (LDM-1 at 200 steps: "
                   "~10 min for 64)")
    p.add_argument("--sampler-steps", nargs="+", type=int, default=[5, 10, 20, 50])
    p.add_argument("--sampler-f", type=int, default=4, choices=FACTORS, help="the LDM of the samplers part")
    p.add_argument("--class-run", default="runs/class-emoji64", help="class-conditional LDM for the guidance part")
    p.add_argument("--scales", nargs="+", type=float, default=[1.0, 1.5, 2.0, 3.0, 5.0, 8.0])
    p.add_argument("--guidance-steps", type=int, default=DEFAULT_STEPS, help="sampler steps of the guidance part")
    p.add_argument("--batch", type=int, default=25, help="images sampled at a time")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every LDM of fig6, e.g. --set train.lr=2e-4")
    p.add_argument("--threads", type=int, default=1, help="torch threads (one per process: run two processes)")
    p.add_argument("--device", default="auto")
    p.add_argument("--redo", action="store_true", help="measure again what the JSON files already hold")
    p.add_argument("--estimate-only", action="store_true", help="print the compute estimate and stop")
    return p


def machine(argv: list[str] | None, args) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    return {"command": command_line(argv), "threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cpu": cpu, "cores": os.cpu_count(),
            "device": str(args.device_), "torch": torch.__version__, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_average_start": list(os.getloadavg())}


def class_pipeline(args) -> Pipeline | None:
    try:
        return ldmkit.load(resolve_model_file(args.class_run), device=str(args.device_))
    except LdmkitError:
        return None


def training_minutes(f: int, parts: list[str], args) -> float:
    """The budgets still to be trained for LDM-f (its first stage, the LDM itself)."""
    minutes = 0.0
    trains_ae = f != 1 and not (f == 4 and args.ae_f4) and {"recon", "fig6"} & set(parts)
    if trains_ae and checkpoint_at(Path(first_stage_spec(f, args)), args.ae_minutes) is None:
        minutes += args.ae_minutes
    if "fig6" in parts and checkpoint_at(ldm_run(f, args), args.ldm_minutes) is None:
        minutes += args.ldm_minutes
    return minutes


def estimate(parts: list[str], args) -> None:
    """Time one batch of every model to be sampled (random weights: the same compute) and print the plan."""
    network = build_feature_network("effnet").to(args.device_)

    def features(images):
        return image_features(images, network, FEATURE_BATCH, args.device_)

    rows, total = [], 0.0
    sampled = set(args.fs) if {"fig6", "fig7"} & set(parts) else set()
    sampled |= {args.sampler_f} if "samplers" in parts else set()
    for f in sorted(set(args.fs) | sampled):
        train, sampling = training_minutes(f, parts, args), {}
        if f in sampled:
            cost = measure_cost(Pipeline(untrained_ldm(f, args), args.device_), features, args.batch)
            if "fig6" in parts:
                sampling["fig6"] = args.checkpoints * cost.seconds(args.fd_samples, args.fd_steps)
            if "fig7" in parts:
                sampling["fig7"] = sum(cost.seconds(args.fig7_samples, s) for s in args.fig7_steps)
            if "samplers" in parts and f == args.sampler_f:
                sampling["samplers"] = len(SAMPLER_NAMES) * sum(cost.seconds(args.fd_samples, s)
                                                                for s in args.sampler_steps)
            per_image = args.batch / 1e3  # ms per image
            rows.append(f"  LDM-{f:<2} {cost.step / per_image:6.1f} ms/image-step, {cost.decode / per_image:5.1f} "
                        f"ms/image decode, {cost.feature * 1e3:3.0f} ms/image features | training {train:4.1f} min, "
                        + ", ".join(f"{k} {v / 60:4.1f}" for k, v in sampling.items()) + " min of sampling")
        elif train:
            rows.append(f"  f={f}: training {train:.1f} min")
        total += train + sum(sampling.values()) / 60
    if "guidance" in parts:
        pipe = class_pipeline(args)
        if pipe is None:
            rows.append(f"  guidance: no class-conditional model in {args.class_run} yet (the part will fail)")
        else:
            cost = measure_cost(pipe, features, args.batch, condition=torch.zeros(args.batch, dtype=torch.long),
                                guidance=2.0)
            minutes = len(args.scales) * cost.seconds(args.fd_samples, args.guidance_steps) / 60
            total += minutes
            rows.append(f"  guidance: {cost.step / args.batch * 1e3:.1f} ms/image-step (guided) | "
                        f"{minutes:.1f} min of sampling")
    print(f"compute estimate, {torch.get_num_threads()} thread(s), from one timed batch of each model (latent "
          "caching, first-stage evaluation and the reference statistics, once, come on top):",
          *rows, f"  total about {total:.0f} min", sep="\n", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    torch.set_num_threads(args.threads)
    args.device_ = pick_device(args.device)
    out = Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    parts = [p for p in PARTS if p in args.parts]
    if parts:
        estimate(parts, args)
    if args.estimate_only:
        return 0
    meta = machine(argv, args)
    judge = Judge.of_split("train", args.device_) if set(parts) - {"recon"} else None
    if judge is not None:
        part_floor(args, out, judge)
    for part in parts:
        start = time.perf_counter()
        if part == "recon":
            part_recon(args, meta, out)
        else:
            {"fig6": part_fig6, "fig7": part_fig7, "samplers": part_samplers, "guidance": part_guidance}[part](
                args, meta, out, judge)
        print(f"[{part}] done in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    report = write_report(out, Path(args.report_dir))
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

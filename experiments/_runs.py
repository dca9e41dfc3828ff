"""What the experiment scripts share: a shipped LDM config trained (or loaded) on a given first stage.

`trained(config, args)` returns the pipeline of RUNS/<config stem>: a run with a checkpoint is
loaded as it is, one without is trained first, with the --set overrides and with the UNet's
channels fitted to the first stage (`--first-stage identity` gives a pixel-space model).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import ldmkit
from ldmkit.checkpoint import latest_checkpoint
from ldmkit.config import load_config
from ldmkit.training.ldm import LDMRunConfig, load_first_stage, train_ldm


def add_run_arguments(p: argparse.ArgumentParser, batch: int = 32) -> None:
    """The options every experiment takes: which first stage, where the runs are, training overrides, sampling."""
    p.add_argument("--first-stage", required=True,
                   help="autoencoder run or checkpoint (e.g. runs/kl-f4-emoji64), or identity")
    p.add_argument("--runs", default="runs", help="folder of the LDM runs (each trained if it has no checkpoint)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for training every model, e.g. --set train.steps=300")
    p.add_argument("--sampler", default="ddpm",
                   help="sampler of the evaluated samples (ddpm, ddim, plms, dpmpp_2m, ...): DDPM's fresh noise "
                        "hides more of a short-trained model's errors than DDIM's deterministic steps")
    p.add_argument("--steps", type=int, default=200, help="sampler steps")
    p.add_argument("--batch", type=int, default=batch, help="images sampled at a time")
    p.add_argument("--device", default="auto")
    p.add_argument("--guide-step", type=int, metavar="N",
                   help="autoguidance: guide each model with its own run's checkpoint of step N (kept while training "
                        "by train.keep_steps); --guidance is then the autoguidance strength")


def fit_to_first_stage(cfg: LDMRunConfig) -> LDMRunConfig:
    """The UNet's in/out channels, the LR rescaling of SR and the label-map pooling of semantic
    synthesis, for the configured first stage."""
    stage = load_first_stage(cfg.first_stage).config
    latent, f = stage.latent_channels, stage.downsample_factor
    cond = cfg.conditioning
    if cond.kind == "low_res":
        ratio = cond.low_res.factor / f  # latent pixels per LR pixel
        stages = round(abs(math.log2(ratio)))
        cond = replace(cond, low_res=replace(cond.low_res, stages=stages, multiplier=2.0 if ratio > 1 else 0.5))
    if cond.kind == "semantic":
        cond = replace(cond, semantic=replace(cond.semantic, factor=f))
    unet = replace(cfg.unet, in_channels=latent + cond.concat_channels(latent), out_channels=latent)
    return replace(cfg, unet=unet, conditioning=cond)


def run_config(config: str, args) -> LDMRunConfig:
    """The config args.runs/<stem of config> was trained with."""
    return load_config(LDMRunConfig, Path(args.runs) / Path(config).stem / "config.yaml")


def trained(config: str, args) -> ldmkit.Pipeline:
    """The pipeline of args.runs/<stem of config>, trained first if that run has no checkpoint."""
    name = Path(config).stem
    run_dir = Path(args.runs) / name
    guide_step = getattr(args, "guide_step", None)
    if latest_checkpoint(run_dir) is None:
        cfg = load_config(LDMRunConfig, config, [f"first_stage={args.first_stage}", *args.overrides])
        if guide_step is not None:  # the guide's checkpoint is kept, with any the config or --set keep
            cfg = replace(cfg, train=replace(cfg.train, keep_steps=tuple(sorted({*cfg.train.keep_steps, guide_step}))))
        start = time.perf_counter()
        train_ldm(fit_to_first_stage(cfg), run_dir)
        print(f"[{name}] trained {run_dir} in {time.perf_counter() - start:.0f} s", flush=True)
    else:
        print(f"[{name}] loading {run_dir} (delete it, or pass another --runs, to train anew)", flush=True)
    guide = None if guide_step is None else run_dir / "checkpoints" / f"step-{guide_step:08d}"
    return ldmkit.load(run_dir, device=args.device, guide=guide)


def batches(n: int, size: int):
    """Slices of `size` (the last one shorter) covering range(n)."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def spread(n: int, length: int) -> list[int]:
    """Up to n indices evenly spread over range(length), first and last included (the data is sorted by
    code point, so this covers every group)."""
    return sorted({round(i * (length - 1) / max(n - 1, 1)) for i in range(n)})  # n >= length: all of them


def command_line(argv: list[str] | None) -> str:
    """How this script was called, for the report."""
    return "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])

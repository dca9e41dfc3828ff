"""The models of experiments/paper_claims.py: a first stage and an LDM per downsampling factor f, each
trained for a wall-clock budget (`train.max_minutes`, which the trainers carry over resumes).

- First stages: f = 1 is the identity (pixel space); f = 2, 4, 8, 16 are the KL autoencoders of
  configs/autoencoder/kl-f{f}-emoji64.yaml, trained for --ae-minutes each (constant learning rate
  after warm-up: a cosine schedule would need a step count). `--ae-f4 RUN` reuses a trained KL-f4.
- LDMs: the unconditional recipe of configs/ldm/emoji64-kl-f4.yaml with one small UNet for every f
  (UNET below); only its in/out channels follow the latent (`_runs.fit_to_first_stage`). Each is
  trained for --ldm-minutes in --checkpoints segments: segment k resumes the run with a budget of
  k/K of the total, so the run stops (with a checkpoint) at K evenly spaced training times.

A run whose checkpoint already holds the budget is reused; a shorter one is resumed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from _runs import fit_to_first_stage  # experiments/_runs.py

from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.checkpoint import CHECKPOINT_DIR, STATE_FILE, latest_checkpoint, load_state
from ldmkit.config import load_config
from ldmkit.pipeline.model import LatentDiffusion, LDMConfig
from ldmkit.training.autoencoder import AutoencoderRunConfig, train_autoencoder
from ldmkit.training.ldm import IDENTITY, LDMRunConfig, load_first_stage, train_ldm

FACTORS = (1, 2, 4, 8, 16, 32)
RESOLUTION = 64
LDM_CONFIG = "configs/ldm/emoji64-kl-f4.yaml"
# One UNet for every f: 32 channels, three levels (x1, x2, x4), one ResBlock per level, attention at
# the lowest level only. LDM-1's 64x64 pixels go down to 16x16 there (256 attention tokens), LDM-16's
# 4x4 latent down to 1x1 (a valid UNet, whose single-token attention is a per-position layer). 2.7 M
# parameters: with 64 channels (10.9 M) an LDM-1 training step (batch 32) took ~4x as long in a quick
# timing here, and at 32 channels LDM-1 still trains at only ~10 images/s on one thread.
UNET = ["unet.model_channels=32", "unet.channel_mult=[1,2,4]", "unet.num_res_blocks=1",
        "unet.attention_resolutions=[4]", "unet.num_head_channels=32"]
# LDM-32's 2x2 latent halves only once: two levels, attention at the second (its 1x1), 64 channels at both. At
# 1x1 a GroupNorm of 32 groups over 32 channels sees one value per group and outputs only its bias: the
# [1, 2] levels of REPORT.md before 2026-12-05 night (0.74 M parameters) lost the latent there, and LDM-32
# learned nothing (FD 318 -> 317); ldmkit now refuses that size (UNetConfig.smallest_size).
UNET_F32 = ["unet.channel_mult=[2,2]", "unet.attention_resolutions=[2]"]
# The recipe of every budgeted LDM: the main job's (emoji64-kl-f4.yaml: min-SNR-5, latents centred per channel),
# but a constant learning rate, since the wall-clock budget, not a step count, ends the run (cosine decay needs
# the steps; 3e-4 constant with min-SNR-5 is the recipe row `minsnr-const` of docs/results/RECIPE.md).
RECIPE = ["train.lr=3.0e-4", "train.lr_schedule=constant"]


def centred(f: int) -> bool:
    """Whether LDM-f's latents are centred: every KL first stage's are; LDM-1's pixels have no first stage to fold
    a shift into (REPORT.md of 2026-12-05 05:13 was measured with no centring at all)."""
    return f != 1


NEVER = 1_000_000_000  # steps, checkpoint and image intervals: the time budget always ends the run first


def autoencoder_config(f: int) -> str:
    return f"configs/autoencoder/kl-f{f}-emoji64.yaml"


def first_stage_spec(f: int, args) -> str:
    """What LDM-f's `first_stage` is: identity, --ae-f4, or the budgeted run RUNS/kl-f{f}."""
    if f == 1:
        return IDENTITY
    if f == 4 and args.ae_f4:
        return args.ae_f4
    return str(Path(args.runs) / f"kl-f{f}")


def trained_seconds(checkpoint: Path) -> float | None:
    """The training time stored in a checkpoint (None for runs older than train.max_minutes)."""
    seconds = load_state(checkpoint / STATE_FILE).get("train_seconds")
    return None if seconds is None else float(seconds)


def checkpoints_by_time(run_dir: Path) -> list[tuple[float, Path]]:
    """(training seconds, folder) of every checkpoint of a run, in order of time."""
    found = [(trained_seconds(p), p) for p in sorted((run_dir / CHECKPOINT_DIR).glob("step-*"))
             if (p / STATE_FILE).is_file()]
    return sorted((s if s is not None else math.inf, p) for s, p in found)


def checkpoint_at(run_dir: Path, minutes: float) -> Path | None:
    """The first checkpoint whose training time reached `minutes`, if the run got that far."""
    return next((p for s, p in checkpoints_by_time(run_dir) if s >= 60 * minutes), None)


def ensure_autoencoder(f: int, args) -> str:
    """The first stage of LDM-f, trained (or resumed) first when its run has less than --ae-minutes."""
    spec = first_stage_spec(f, args)
    if f == 1 or (f == 4 and args.ae_f4):
        return spec
    run_dir = Path(spec)
    if checkpoint_at(run_dir, args.ae_minutes) is None:
        overrides = [f"train.steps={NEVER}", f"train.max_minutes={args.ae_minutes}", "train.lr_schedule=constant",
                     f"train.ckpt_every={NEVER}", f"train.image_every={NEVER}", "eval_batches=1"]
        cfg = load_config(AutoencoderRunConfig, autoencoder_config(f), overrides)
        resume = latest_checkpoint(run_dir) is not None
        print(f"[kl-f{f}] {'resuming' if resume else 'training'} {run_dir} for {args.ae_minutes:g} min", flush=True)
        train_autoencoder(cfg, run_dir, resume=resume)
    return spec


def ldm_config(f: int, first_stage: str, args, minutes: float | None) -> LDMRunConfig:
    overrides = [f"first_stage={first_stage}", *UNET, *(UNET_F32 if f == 32 else []), *RECIPE,
                 f"center_latents={str(centred(f)).lower()}",
                 f"unet.sample_size={RESOLUTION // f}",
                 f"train.steps={NEVER}", f"train.ckpt_every={NEVER}", f"train.image_every={NEVER}",
                 f"train.keep_last={args.checkpoints + 2}", *args.overrides]
    cfg = load_config(LDMRunConfig, LDM_CONFIG, overrides)
    return replace(cfg, train=replace(cfg.train, max_minutes=minutes))


def ldm_run(f: int, args) -> Path:
    return Path(args.runs) / f"ldm-f{f}"


def time_points(args) -> list[float]:
    """The training times (minutes) at which LDMs stop for a checkpoint."""
    return [args.ldm_minutes * k / args.checkpoints for k in range(1, args.checkpoints + 1)]


def train_until(f: int, minutes: float, args) -> Path:
    """LDM-f's checkpoint at `minutes` of training, training (or resuming) up to there first."""
    run_dir = ldm_run(f, args)
    found = checkpoint_at(run_dir, minutes)
    if found is None:
        first_stage = ensure_autoencoder(f, args)
        cfg = fit_to_first_stage(ldm_config(f, first_stage, args, minutes))
        resume = latest_checkpoint(run_dir) is not None
        print(f"[ldm-f{f}] {'resuming' if resume else 'training'} {run_dir} up to {minutes:g} min", flush=True)
        train_ldm(cfg, run_dir, resume=resume)
        found = checkpoint_at(run_dir, minutes)
    return found


def untrained_ldm(f: int, args) -> LatentDiffusion:
    """LDM-f with random weights (and its first stage's architecture): what sampling costs, before training."""
    if f == 1:
        stage = AutoencoderConfig(kind="identity")
    elif f == 4 and args.ae_f4:
        stage = load_first_stage(args.ae_f4).config
    else:
        stage = load_config(AutoencoderRunConfig, autoencoder_config(f), []).model
    cfg = ldm_config(f, IDENTITY, args, None)
    c = stage.latent_channels
    unet = replace(cfg.unet, in_channels=c, out_channels=c)
    return LatentDiffusion(LDMConfig(stage, unet, cfg.diffusion, cfg.conditioning, 1.0, RESOLUTION))

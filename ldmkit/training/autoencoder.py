"""Stage 1 training: an autoencoder with L1 + perceptual + PatchGAN loss (`ldmkit train-autoencoder`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ldmkit.autoencoder.checkpoint import KIND, autoencoder_state
from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.autoencoder.loss import AutoencoderLoss, AutoencoderLossConfig
from ldmkit.autoencoder.model import build_autoencoder
from ldmkit.data import DataConfig, build_dataset, train_loader
from ldmkit.data.loader import check_readable, fixed_images
from ldmkit.device import autocast, pick_device
from ldmkit.errors import ConfigError
from ldmkit.evaluation.autoencoder import evaluate_autoencoder, reconstruction_grid
from ldmkit.fast import for_frozen_features, keep_freed_memory
from ldmkit.features.perceptual import PerceptualConfig, build_perceptual
from ldmkit.training.config import TrainConfig, adamw, learning_rate
from ldmkit.training.guard import NonFiniteGuard
from ldmkit.training.loop import TrainLoop
from ldmkit.training.run import RunLogger, prepare_run, restore_rng, rng_state, save_run_checkpoint, write_run_config

DISC_WEIGHT_DECAY = 0.01  # the discriminator's AdamW: torch's default decay, as the CompVis recipe leaves it


@dataclass(frozen=True)
class AutoencoderRunConfig:
    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    loss: AutoencoderLossConfig = field(default_factory=AutoencoderLossConfig)
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(betas=(0.5, 0.9)))
    eval_batches: int = 8  # validation batches for the end-of-run PSNR / SSIM / perceptual figures

    def __post_init__(self):
        if self.eval_batches < 1:
            raise ConfigError(f"config key 'eval_batches' must be at least 1, got {self.eval_batches}; it is the "
                              "number of validation batches of the end-of-run PSNR / SSIM / perceptual figures")


def train_autoencoder(cfg: AutoencoderRunConfig, run_dir: str | Path, resume: bool = False) -> Path:
    """Train (or resume) into `run_dir`; returns the folder of the final checkpoint."""
    tc = cfg.train
    run_dir, state = prepare_run(run_dir, cfg, resume, comparable=("model", "loss", "perceptual", "data"))
    device = pick_device(tc.device)
    keep_freed_memory()  # (fast/allocator.py: 10-15 % faster CPU steps)
    torch.manual_seed(tc.seed)
    model = build_autoencoder(cfg.model).to(device)
    perceptual = build_perceptual(cfg.perceptual) if cfg.loss.perceptual_weight > 0 else None
    if perceptual is not None:
        for_frozen_features(perceptual.backbone)  # (fast/frozen.py: its pass 1.5x faster)
    loss_fn = AutoencoderLoss(cfg.loss, perceptual, cfg.model.kind).to(device)
    opt = adamw(model.parameters(), tc)
    opt_d = adamw(loss_fn.discriminator.parameters(), tc, lr=cfg.loss.disc_lr or tc.lr,
                  weight_decay=DISC_WEIGHT_DECAY)
    noise = torch.Generator(device).manual_seed(tc.seed)  # posterior samples
    log = RunLogger(run_dir)
    guard = NonFiniteGuard(tc.max_nonfinite)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        loss_fn.discriminator.load_state_dict(state["discriminator"])
        opt.load_state_dict(state["opt"])
        opt_d.load_state_dict(state["opt_d"])
        noise.set_state(state["noise"])
        restore_rng(state["rng"])
        start = state["step"]
        guard.total = state["nonfinite"]
        log.skipped_images = state["skipped_images"]
        log.resume_at(start)

    train_set = build_dataset(cfg.data, "train")
    val_set = build_dataset(cfg.data, "val")
    check_readable(train_set)  # fail now, not mid-run (fixed_images below does it for val_set)
    batches = iter(train_loader(train_set, tc.batch_size, tc.seed, start_batches=start,
                                num_workers=cfg.data.num_workers, balance=cfg.data.balance))
    fixed = fixed_images(val_set, 16).to(device)
    write_run_config(run_dir, cfg)  # the data is readable: the run folder can start

    def state_dict(step: int) -> dict:
        return {"step": step, "model": model.state_dict(), "discriminator": loss_fn.discriminator.state_dict(),
                "opt": opt.state_dict(), "opt_d": opt_d.state_dict(), "noise": noise.get_state(),
                "rng": rng_state(), "nonfinite": guard.total, "skipped_images": log.skipped_images,
                "train_seconds": loop.seconds}

    def save(step: int) -> Path:
        tensors, model_cfg = autoencoder_state(model)
        return save_run_checkpoint(run_dir, step, tensors, KIND, model_cfg, state_dict(step), cfg, tc.keep_last,
                                   tc.keep_steps)

    model.train()
    loss_fn.train()
    loop = TrainLoop(tc, start, state.get("train_seconds", 0.0) if state else 0.0, "train-autoencoder")
    last = None
    for step in loop:
        batch = next(batches)
        log.count_skipped(batch["skipped"])
        x = batch["image"].to(device, non_blocking=True)
        lr = learning_rate(tc, step)
        for group in opt.param_groups:
            group["lr"] = lr
        for group in opt_d.param_groups:
            group["lr"] = cfg.loss.disc_lr or lr
        with autocast(device, tc.precision):
            out = model(x, generator=noise)
            loss, logs = loss_fn.generator_loss(x, out, step, model.last_layer(), model.decode_continuous)
        if guard.check(loss.item(), step):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip:
                logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            if loss_fn.adversarial_active(step):
                with autocast(device, tc.precision):
                    d_loss, d_logs = loss_fn.discriminator_loss(x, out.reconstruction, step)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                logs.update(d_logs)
        logs["nonfinite_total"] = guard.total
        done = step + 1
        tick = loop.tick(done)
        if tick.log:
            log.scalars(done, logs, images_per_second=tick.images_per_second, lr=opt.param_groups[0]["lr"],
                        train_seconds=loop.seconds)
            loop.show(loss=f"{float(logs['loss']):.4f}", l1=f"{float(logs['l1']):.4f}",
                      img_s=f"{tick.images_per_second:.1f}")
        if tick.image:
            model.eval()
            log.image(done, "reconstructions", reconstruction_grid(model, fixed))
            model.train()
        if tick.checkpoint:
            last = save(done)
        if tick.stop:
            break
    loop.close()
    if last is None:  # resumed a finished run (or one whose time budget is spent): nothing to train
        return save(start)
    model.eval()
    metrics = evaluate_autoencoder(model, val_set, perceptual, batch_size=tc.batch_size, device=device,
                                   max_batches=cfg.eval_batches)
    log.final(metrics)
    log.close()
    return last

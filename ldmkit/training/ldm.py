"""Stage 2 training: the latent diffusion model over a frozen first stage (`ldmkit train`).

One step: a global batch of `train.batch_size` latents (split over ranks and accumulation
micro-batches), conditions dropped with probability `conditioning.drop_prob`, L_LDM with t and
noise drawn per sample, AdamW with warm-up, gradient clipping, an EMA update. A non-finite loss
skips the step (all ranks agree). Every random draw of sample i comes from its own seed, which
the sampler derives from the sample's position in the epoch, so a run resumes exactly and N
ranks train exactly like one process with the same global batch.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ldmkit.autoencoder.recenter import check_recenterable, recenter_latents
from ldmkit.conditioning import ConditioningConfig, build_conditioner
from ldmkit.conditioning.clip_text import check_clip_weights
from ldmkit.config import to_dict
from ldmkit.data import DataConfig
from ldmkit.data.conditions import batch_condition, batch_keys, needs_images
from ldmkit.data.images import make_grid
from ldmkit.data.loader import fixed_batch
from ldmkit.data.transforms import stream_generators
from ldmkit.device import autocast
from ldmkit.diffusion.schedule import DiffusionConfig
from ldmkit.errors import CheckpointError, ConfigError, LdmkitError
from ldmkit.fast import for_training
from ldmkit.lora.adapter import KIND as LORA_KIND
from ldmkit.lora.adapter import adapter_tensors
from ldmkit.lora.config import LoRAConfig
from ldmkit.lora.layers import adapter_weights, add_lora, merge_lora
from ldmkit.lora.targets import lora_targets
from ldmkit.pipeline.checkpoint import KIND, ldm_config_dict, ldm_tensors
from ldmkit.pipeline.generate import Pipeline
from ldmkit.pipeline.model import LatentDiffusion, LDMConfig
from ldmkit.sampling import DEFAULT_SAMPLER
from ldmkit.training.batches import CONDITION_STREAM, LatentBatches
from ldmkit.training.config import TrainConfig, adamw, learning_rate
from ldmkit.training.distributed import setup_distributed, teardown_distributed
from ldmkit.training.ema import EMA
from ldmkit.training.guard import NonFiniteGuard
from ldmkit.training.init_from import (
    IDENTITY,
    InitConfig,
    changed_keys,
    check_class_names,
    check_first_stage,
    copy_init_weights,
    load_first_stage,
    load_init_model,
    resolve_init_config,
)
from ldmkit.training.latent_cache import weights_digest
from ldmkit.training.loop import TrainLoop
from ldmkit.training.run import RunLogger, prepare_run, restore_rng, rng_state, save_run_checkpoint, write_run_config
from ldmkit.training.trained import TrainedParts, drop, load_trained, trained_state  # noqa: F401 (drop: re-exported)
from ldmkit.unet.config import UNetConfig


@dataclass(frozen=True)
class LDMRunConfig:
    init: InitConfig = field(default_factory=InitConfig)  # fine-tuning: the trained model to start from
    first_stage: str = IDENTITY  # an autoencoder checkpoint (file, checkpoint or run folder), an LDM (its first
    # stage), or "identity"
    scale_factor: float | None = None  # None: 1 / std of the training latents, measured once
    center_latents: bool = False  # subtract the training latents' mean per channel, measured once and folded
    # into the first stage's biases (KL first stages; autoencoder/recenter.py)
    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # rank > 0: train low-rank adapters of init.model only
    ema_decay: float = 0.9999
    latent_cache: bool = True  # encode the dataset once and train on the stored latents
    latent_cache_views: int = 4  # data.crop: random: crops cached per image (0: no cache, crop + encode each step)
    sample_steps: int = 50  # periodic EMA sample grids: steps of ldmkit.sampling.DEFAULT_SAMPLER ...
    sample_n: int = 16  # ... and images

    def __post_init__(self):
        if self.latent_cache_views < 0:
            raise ConfigError(f"config key 'latent_cache_views' must be 0 or more, got {self.latent_cache_views}; "
                              "it is the number of random crops cached per image (0: crop and encode every batch)")
        if self.lora.enabled and self.init.model is None:
            raise ConfigError("lora.rank: a LoRA adapts a trained model; give it with --init-from MODEL "
                              "(init.model), or set lora.rank: 0 to train the whole model")
        if self.scale_factor is not None and self.scale_factor <= 0:
            raise ConfigError(f"config key 'scale_factor' must be positive, got {self.scale_factor}; or null: "
                              "1 / std of the training latents, measured once")
        if not 0.0 <= self.ema_decay <= 1.0:
            raise ConfigError(f"config key 'ema_decay' must be in [0, 1], got {self.ema_decay}; the paper's is "
                              "0.9999, short runs use 0.999")
        for key in ("sample_steps", "sample_n"):  # the EMA sample grids: otherwise found only after training
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}' must be at least 1, got {getattr(self, key)}; it sets the "
                                  "EMA sample grids written every train.image_every steps and at the end")
        if self.sample_steps > self.diffusion.timesteps:
            raise ConfigError(f"config key 'sample_steps' must be at most diffusion.timesteps "
                              f"({self.diffusion.timesteps}), got {self.sample_steps}; use fewer (50 is plenty)")


def train_ldm(cfg: LDMRunConfig, run_dir: str | Path, resume: bool = False, given: set[str] | None = None,
              source: LatentDiffusion | None = None) -> Path:
    """Train (or resume) an LDM into `run_dir`; returns the final checkpoint folder (rank 0).

    With `cfg.init.model` (fine-tuning), `given` names the config keys the user set (dotted, e.g.
    "unet.model_channels"), which must agree with the model started from; None: the keys whose values
    differ from LDMRunConfig's defaults. `source`: that model when the caller has loaded it already."""
    tc = cfg.train
    ctx = setup_distributed(tc.device)
    try:
        return _train(cfg, Path(run_dir), resume, ctx, given, source)
    finally:
        teardown_distributed(ctx)


def latent_normalisation(cfg: LDMRunConfig, state: dict | None, batches: LatentBatches, run_dir: Path
                         ) -> tuple[torch.Tensor | None, float]:
    """(the per-channel shift (C,) subtracted from the training latents, or None; the scale_factor they are
    then multiplied by): a resumed run's own, else measured once where the config leaves them open."""
    if state is not None:
        saved = state.get("latent_shift")
        if cfg.center_latents != (saved is not None):
            raise ConfigError(f"cannot resume {run_dir} with center_latents {str(cfg.center_latents).lower()}: the "
                              f"run trains with {str(saved is not None).lower()}; drop the override")
        if cfg.scale_factor is not None and cfg.scale_factor != state["scale_factor"]:
            raise ConfigError(f"cannot resume {run_dir} with scale_factor {cfg.scale_factor}: the run trains with "
                              f"{state['scale_factor']}; drop the override")
        return None if saved is None else torch.tensor(saved), state["scale_factor"]
    if cfg.center_latents:
        check_recenterable(batches.first_stage)  # before anything is measured or written
    elif cfg.scale_factor is not None:
        return None, cfg.scale_factor
    shift, scale = batches.measured_normalisation(cfg.center_latents)
    return shift, cfg.scale_factor or scale


def _train(cfg: LDMRunConfig, run_dir: Path, resume: bool, ctx, given: set[str] | None,
           source: LatentDiffusion | None) -> Path:
    tc, device = cfg.train, ctx.device
    if cfg.init.model is None and not resume:  # (fine-tuning takes MODEL's UNet as it is; a resumed run, its own)
        cfg.unet.check_attention_levels()
    per_rank, rest = divmod(tc.batch_size, ctx.world_size * tc.grad_accum)
    if rest:
        raise ConfigError(f"train.batch_size {tc.batch_size} is not divisible by processes x train.grad_accum "
                          f"({ctx.world_size} x {tc.grad_accum}); set train.batch_size to a multiple of "
                          f"{ctx.world_size * tc.grad_accum} or change the number of processes")
    if source is None and cfg.init.model:
        try:
            source = load_init_model(cfg.init)  # fine-tuning: the model to start from
        except LdmkitError as err:
            if not resume:
                raise
            raise CheckpointError(f"cannot resume {run_dir}: it started from {cfg.init.model}, which cannot be read "
                                  f"now ({err}); put it back where it was") from err
    if source is not None and not resume:
        check_first_stage(cfg.first_stage, source, cfg.init.model)
        cfg = resolve_init_config(cfg, source.config, changed_keys(cfg, LDMRunConfig()) if given is None else given)
    if cfg.lora.enabled:
        lora_targets(source, cfg.lora)  # a clear error for targets the model lacks, before anything is written
    if source is None and cfg.conditioning.uses_clip:
        check_clip_weights(cfg.conditioning.text)  # (ditto: a frozen CLIP from scratch must be pretrained)
    first_stage = source.first_stage if source is not None else load_first_stage(cfg.first_stage)  # (ditto)
    prepared = ctx.on_main(lambda: prepare_run(run_dir, cfg, resume, comparable=(
        "init", "first_stage", "unet", "diffusion", "conditioning", "data", "lora")))
    state = None
    if prepared is not None:
        run_dir, state = prepared
    if state is None and resume:
        state = _load_state(run_dir)
    digest = weights_digest(source) if source is not None else None
    if state is not None and state.get("init_digest") != digest:
        raise CheckpointError(f"cannot resume {run_dir}: {cfg.init.model}, the model it started from, has changed "
                              "since (its weights differ); put the original back to continue the run")
    batches = LatentBatches(cfg, first_stage, ctx, per_rank, needs_images(cfg.conditioning))  # (latent cache)
    shift, scale = latent_normalisation(cfg, state, batches, run_dir)
    conditioning = with_class_names(cfg.conditioning, batches.dataset)
    if source is not None:
        check_class_names(conditioning, source.config, batches.dataset)
    ctx.on_main(lambda: write_run_config(run_dir, cfg))  # the data and the config are checked: the run can start
    model_cfg = LDMConfig(first_stage.config, cfg.unet, cfg.diffusion, conditioning, scale, cfg.data.resolution)
    torch.manual_seed(tc.seed)
    # fine-tuning: a CLIP text encoder's weights come from the source (copy_init_weights), so it is made empty
    clip_from_source = source is not None and conditioning.uses_clip
    model = LatentDiffusion(model_cfg, conditioner=build_conditioner(conditioning, empty_clip=True) if clip_from_source
                            else None)
    if source is not None:
        copy_init_weights(model, source)
    else:
        model.first_stage.load_state_dict(first_stage.state_dict())
        if shift is not None:
            recenter_latents(model.first_stage, shift)  # its latents are now E(x) - shift
    del source
    if cfg.lora.enabled:
        add_lora(model, cfg.lora)  # the model frozen, adapters on the targeted layers
    for_training(model).to(device).train()
    trainable = TrainedParts(model)
    ema = EMA(trainable, cfg.ema_decay)
    opt = adamw((p for p in trainable.parameters() if p.requires_grad), tc)
    guard = NonFiniteGuard(tc.max_nonfinite)
    log = RunLogger(run_dir, enabled=ctx.is_main)
    start = 0
    if state is not None:
        load_trained(trainable, state["trained"], cfg.lora.enabled)
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        restore_rng(state["rng"])
        start, guard.total, log.skipped_images = state["step"], state["nonfinite"], state["skipped_images"]
        log.resume_at(start)
    loop = TrainLoop(tc, start, state.get("train_seconds", 0.0) if state else 0.0, "train", ctx, show=ctx.is_main)
    wrapped = DistributedDataParallel(trainable) if ctx.enabled else trainable
    stream = batches.stream(start, scale, shift)

    def save(step: int) -> Path | None:
        if not ctx.is_main:
            return None
        train_state = {"step": step, "trained": trained_state(trainable, cfg.lora.enabled), "ema": ema.state_dict(),
                       "opt": opt.state_dict(), "rng": rng_state(), "nonfinite": guard.total,
                       "skipped_images": log.skipped_images, "scale_factor": scale, "train_seconds": loop.seconds,
                       "latent_shift": None if shift is None else shift.tolist(),
                       "init_digest": digest}
        if cfg.lora.enabled:  # the checkpoint's model file is the adapter alone, with the EMA weights
            tensors, kind = adapter_tensors(adapter_weights(trainable, ema.shadow)), LORA_KIND
            model_cfg = {"lora": to_dict(cfg.lora), "base": to_dict(cfg.init)}
        else:
            tensors, kind, model_cfg = ldm_tensors(model, dict(ema.shadow)), KIND, ldm_config_dict(model)
        return save_run_checkpoint(run_dir, step, tensors, kind, model_cfg, train_state, cfg, tc.keep_last,
                                   tc.keep_steps)

    last = None
    for step in loop:
        lr = learning_rate(tc, step)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for micro in range(tc.grad_accum):
            z0, batch = next(stream)
            sync = (micro == tc.grad_accum - 1) or not ctx.enabled
            with (contextlib.nullcontext() if sync else wrapped.no_sync()), autocast(device, tc.precision):
                loss = wrapped(z0, batch, cfg.conditioning.drop_prob) / tc.grad_accum
                loss.backward()
            total += loss.detach()
        total = ctx.all_reduce_mean(total)
        logs = {"loss": total}
        if guard.check(total.item(), step):
            norm = apply_gradients(trainable, opt, ema, tc.grad_clip)
            if norm is not None:
                logs["grad_norm"] = norm
        done = step + 1
        tick = loop.tick(done)
        if tick.log:
            log.count_skipped(batches.take_skipped())
            log.scalars(done, logs, images_per_second=tick.images_per_second, lr=lr, nonfinite_total=guard.total,
                        train_seconds=loop.seconds)
            loop.show(loss=f"{total.item():.4f}", img_s=f"{tick.images_per_second:.1f}")
        if ctx.is_main and tick.image:
            log.image(done, "samples_ema", sample_grid(model, ema, cfg, device, batches.dataset))
        if tick.checkpoint:
            last = save(done)
            ctx.barrier()
        if tick.stop:
            break
    loop.close()
    log.close()
    if last is None and ctx.is_main:  # nothing trained: a finished run, or one whose time budget is spent
        last = save(start)
    return last


def apply_gradients(trainable: nn.Module, opt: torch.optim.Optimizer, ema: EMA,
                    grad_clip: float) -> torch.Tensor | None:
    """The update after backward: clip the gradients' global norm (when grad_clip > 0), step, update
    the EMA. Returns the norm before clipping (None when not clipping)."""
    norm = torch.nn.utils.clip_grad_norm_(trainable.parameters(), grad_clip) if grad_clip else None
    opt.step()
    ema.update(trainable)
    return norm


def with_class_names(conditioning: ConditioningConfig, dataset) -> ConditioningConfig:
    """Store the dataset's class names in a class-conditional model, so sampling can ask by name."""
    names = tuple(getattr(dataset, "class_names", ()))
    section = conditioning.class_label
    if conditioning.kind != "class" or section.names or len(names) != section.num_classes:
        return conditioning
    return replace(conditioning, class_label=replace(section, names=names))


def _load_state(run_dir: Path) -> dict:
    from ldmkit.checkpoint import latest_checkpoint, load_state

    return load_state(latest_checkpoint(run_dir) / "state.pt")


@torch.no_grad()
def sample_grid(model: LatentDiffusion, ema: EMA, cfg: LDMRunConfig, device: torch.device, dataset=None):
    """A grid of samples from the EMA weights (DDIM, fixed seeds) for the logs.

    Conditional models are conditioned on fixed training samples (their labels, captions, boxes,
    label maps, ...); tasks whose condition comes from the image (super-resolution, inpainting)
    show each sample followed in the grid by its reference image."""
    ema_model = copy.deepcopy(model).eval()
    ema.copy_to(TrainedParts(ema_model))
    merge_lora(ema_model)  # (LoRA runs) adapters baked in: the Pipeline's fast path rewrites the layers
    pipe = Pipeline(ema_model, device)
    n, condition, references = cfg.sample_n, None, None
    if batch_keys(cfg.conditioning) and dataset is not None:
        batch = fixed_batch(dataset, cfg.sample_n)
        n = len(batch["label"])
        condition = batch_condition(cfg.conditioning, batch, stream_generators(list(range(n)), CONDITION_STREAM))
        if needs_images(cfg.conditioning):
            references = batch["image"]  # (n, 3, H, W)
    images = pipe.decode(pipe.latents(list(range(n)), condition, steps=cfg.sample_steps, sampler=DEFAULT_SAMPLER)).cpu()
    if references is not None:
        images = torch.stack([images, references.to(images)], dim=1).flatten(0, 1)  # sample, reference, ...
    return make_grid(images)


"""The Latent Diffusion Model: a frozen first stage, a UNet and a conditioner over one schedule.

    x --E--> z0 * scale_factor --q(z_t|z_0)--> z_t --UNet(z_t, t, tau(y))--> prediction
    sample: noise --sampler(UNet)--> z0 --/ scale_factor--D--> x

The first stage never trains here; the diffusion model sees `scale_factor * E(x)`, with the
scale fixed in the config (e.g. 0.18215 for Stable Diffusion's VAE) or measured once as
1 / std of the training latents, as the paper's code does for KL models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.autoencoder.model import Autoencoder, build_autoencoder
from ldmkit.conditioning import Conditioner, Conditioning, ConditioningConfig, build_conditioner, to_device
from ldmkit.diffusion.loss import diffusion_loss
from ldmkit.diffusion.schedule import DiffusionConfig, Schedule
from ldmkit.errors import ConfigError, ShapeError
from ldmkit.sampling.guidance import conditioned
from ldmkit.unet.config import UNetConfig
from ldmkit.unet.model import UNet


@dataclass(frozen=True)
class LDMConfig:
    first_stage: AutoencoderConfig = field(default_factory=lambda: AutoencoderConfig(kind="identity"))
    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    scale_factor: float = 1.0  # latents the UNet sees = scale_factor * E(x)
    image_size: int = 64  # training resolution in pixels, the default sampling size

    def __post_init__(self):
        latent = self.first_stage.latent_channels
        if self.unet.out_channels != latent:
            raise ConfigError(f"unet.out_channels is {self.unet.out_channels} but the first stage has {latent} "
                              f"latent channels; set unet.out_channels={latent}")
        expected = latent + self.conditioning.concat_channels(latent)
        if self.unet.in_channels != expected:
            raise ConfigError(f"unet.in_channels is {self.unet.in_channels}, but the first stage's {latent} latent "
                              f"channels plus the {expected - latent} channels the '{self.conditioning.kind}' "
                              f"condition concatenates make {expected}; set unet.in_channels={expected}")
        self._check_class_injection()
        semantic = self.conditioning.semantic
        uses_maps = "semantic" in (self.conditioning.kind, self.conditioning.hybrid)
        if uses_maps and semantic.factor != self.first_stage.downsample_factor:
            raise ConfigError(f"conditioning.semantic.factor is {semantic.factor}, but the first stage downsamples "
                              f"by {self.first_stage.downsample_factor}; set conditioning.semantic.factor="
                              f"{self.first_stage.downsample_factor} so label maps pool to the latent's size")
        multiple = self.first_stage.downsample_factor * self.unet.size_multiple
        if self.image_size % multiple:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of {multiple} "
                              f"(first-stage f x UNet size multiple)")
        if self.scale_factor <= 0:
            raise ConfigError(f"scale_factor must be positive, got {self.scale_factor}")

    def _check_class_injection(self):
        """unet.num_classes (a table added to the timestep embedding) exists exactly when class labels go there."""
        cond = self.conditioning
        labels = cond.class_label
        to_timestep = cond.kind == "class" and labels.injection == "timestep"
        if to_timestep and self.unet.num_classes != labels.rows:
            raise ConfigError(f"conditioning.class_label.injection is timestep, so the UNet's class table needs "
                              f"one row per class and the null row: set unet.num_classes={labels.rows} "
                              f"(now {self.unet.num_classes})")
        if self.unet.num_classes is not None and not to_timestep:
            raise ConfigError(f"unet.num_classes is {self.unet.num_classes}, but no class labels reach the "
                              "timestep embedding; set conditioning.kind: class with class_label.injection: "
                              "timestep, or unet.num_classes: null")


class LatentDiffusion(nn.Module):
    def __init__(self, config: LDMConfig, unet: UNet | None = None, first_stage: Autoencoder | None = None,
                 conditioner: Conditioner | None = None):
        """`unet`, `first_stage`, `conditioner`: those of the config, built already (loaders pass them made empty, a
        UNet in the dtype it runs in)."""
        super().__init__()
        self.config = config
        first_stage = build_autoencoder(config.first_stage) if first_stage is None else first_stage
        self.first_stage = first_stage.requires_grad_(False).eval()
        self.unet = UNet(config.unet) if unet is None else unet
        self.conditioner = build_conditioner(config.conditioning) if conditioner is None else conditioner
        self.schedule = Schedule.from_config(config.diffusion)

    def train(self, mode: bool = True) -> LatentDiffusion:
        super().train(mode)
        self.first_stage.eval()  # frozen: no dropout, ever
        return self

    @property
    def device(self) -> torch.device:
        return self.unet.time_embed[0].weight.device

    @property
    def factor(self) -> int:
        return self.config.first_stage.downsample_factor

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, h, w) of the latent of an image of height x width, with a clear error if impossible."""
        multiple = self.factor * self.config.unet.size_multiple
        for name, size in (("height", height), ("width", width)):
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise ShapeError(f"{name} must be a whole number of pixels > 0, got {size!r}; use a multiple of "
                                 f"{multiple}, e.g. {self.config.image_size}")
            if size % multiple:
                low, high = size // multiple * multiple, (size // multiple + 1) * multiple
                near = f"{low} or {high}" if low else f"{high} or another multiple of {multiple}"
                raise ShapeError(f"{name} {size} px is not a multiple of {multiple} (first-stage f = {self.factor} "
                                 f"x UNet multiple {self.config.unet.size_multiple}); use {near}")
        if height < self.minimum_size and width < self.minimum_size:
            raise ShapeError(f"{width}x{height} px is too small for this model: its UNet's lowest level would be 1 x 1 "
                             f"pixel; make one side {self.minimum_size} px or more")
        return (self.config.first_stage.latent_channels, height // self.factor, width // self.factor)

    @property
    def minimum_size(self) -> int:
        """Pixels one side of an image needs at least (unet/config.py smallest_size, times f)."""
        return self.factor * self.config.unet.smallest_size

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> scaled latents (B, C, H/f, W/f); KL: posterior sample or mode."""
        return self.first_stage.latent(images, generator) * self.config.scale_factor

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, C, h, w) -> images (B, 3, h f, w f), not clamped."""
        return self.first_stage.decode(z / self.config.scale_factor)

    def condition(self, cond) -> Conditioning:
        """The UNet inputs for a condition in its conditioner's tensor form (None: unconditional models),
        on the model's device."""
        return self.conditioner(to_device(cond, self.device), encode=self.encode)

    def null_condition(self, batch_size: int, device: torch.device) -> Conditioning:
        return self.conditioner.null(batch_size, device)

    def loss(self, z0: torch.Tensor, cond: Conditioning, generators: list[torch.Generator]) -> torch.Tensor:
        """L_LDM, the batch mean; t and noise of sample i come from generators[i] only."""
        cfg = self.config.diffusion
        lognormal = (cfg.lognormal_mean, cfg.lognormal_std) if cfg.timestep_sampling == "lognormal" else None
        return diffusion_loss(conditioned(self.unet, cond), z0, self.schedule, generators, cfg.prediction,
                              cfg.min_snr_gamma, lognormal)

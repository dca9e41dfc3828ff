"""Conditions concatenated to z_t: maps at the latent's size, `{"concat": (B, C, h, w)}`.

- low_res (super-resolution, the paper's Sec. 4.4): the low-resolution image in [-1, 1], resized
  `stages` times by `multiplier` to the latent's size (CompVis' SpatialRescaler; 0 stages for an
  f = 4 first stage and x4 SR, where the LR image already has the latent's size), optionally
  mapped to `out_channels` by a 1x1 conv. Training derives it from each HR image (`prepare`):
  x`factor` bicubic or the random BSR mix (ldmkit/data/degradations.py).
- inpaint (the paper's Sec. 4.5): the masked image image * (1 - mask) encoded by the first stage
  (`encode`), and the mask resized to the latent's size: latent_channels + 1 channels. Mask
  convention: 1 = hole (to be generated), 0 = keep; holes of the masked image are 0 (grey).
  Training draws a LaMa-style large mask per sample from its generator (ldmkit/data/masks.py).

The null ("unconditional") condition of both is all zeros; it is (1, C, 1, 1) and broadcasts to
any batch and size. A raw condition of None is an error: these tasks need their input.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ldmkit.conditioning.base import Conditioner, Conditioning, Encode
from ldmkit.conditioning.image_inputs import first_size, image_and_mask, image_batch
from ldmkit.conditioning.sections import InpaintConfig, LowResConfig
from ldmkit.data.degradations import degrade
from ldmkit.data.masks import large_masks
from ldmkit.errors import ConfigError, LdmkitError


class LowResConditioner(Conditioner):
    """`{"concat": rescale(lr)}`: a low-resolution image (B, 3, h, w) for super-resolution."""

    batch_keys = ("image",)
    needs_images = True

    def __init__(self, cfg: LowResConfig):
        super().__init__()
        self.cfg = cfg
        self.concat_channels = cfg.concat_channels(0)
        if cfg.out_channels is not None:  # CompVis' name, so `cond_stage_model.channel_mapper.*` loads
            self.channel_mapper = nn.Conv2d(cfg.channels, cfg.out_channels, 1, bias=cfg.bias)

    def prepare(self, batch: dict, generators: list[torch.Generator]) -> torch.Tensor:
        """The LR versions (B, 3, H/factor, W/factor) of the batch's HR images."""
        return degrade(batch["image"], self.cfg.factor, self.cfg.degradation, generators)

    def image_size(self, raw: Any) -> tuple[int, int] | None:
        size = first_size(raw)
        return None if size is None else (size[0] * self.cfg.factor, size[1] * self.cfg.factor)

    def rescale(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C', h m^stages, w m^stages), the map concatenated to z_t."""
        x = lr
        for _ in range(self.cfg.stages):
            x = F.interpolate(x, scale_factor=self.cfg.multiplier, mode=self.cfg.method)
        return self.channel_mapper(x) if self.cfg.out_channels is not None else x

    def forward(self, raw: Any, batch_size: int, device: torch.device, encode: Encode | None = None) -> Conditioning:
        if raw is None:
            raise LdmkitError("a super-resolution model needs the low-resolution image as its condition: "
                              "pipe(condition=lr_image) with lr_image (3, h, w) in [-1, 1] or a PIL image")
        lr = image_batch(raw, batch_size, "low-resolution image", self.cfg.channels).to(device)
        return {"concat": self.rescale(lr)}

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        return {"concat": torch.zeros(1, self.concat_channels, 1, 1, device=device)}


class InpaintConditioner(Conditioner):
    """`{"concat": [encode(image * (1 - mask)), resize(mask)]}`: (B, latent_channels + 1, h, w)."""

    batch_keys = ("image",)
    needs_images = True

    def __init__(self, cfg: InpaintConfig):
        super().__init__()
        self.cfg = cfg

    def prepare(self, batch: dict, generators: list[torch.Generator]) -> dict[str, torch.Tensor]:
        """The batch's images and one random large mask (B, 1, H, W) per sample."""
        images = batch["image"]
        return {"image": images, "mask": large_masks(*images.shape[-2:], generators, self.cfg.masks)}

    def image_size(self, raw: Any) -> tuple[int, int] | None:
        return first_size(raw)

    def resize_mask(self, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, 1, H, W) -> (B, 1, *size) by `mask_resize`."""
        if tuple(mask.shape[-2:]) == tuple(size):
            return mask
        if self.cfg.mask_resize == "max":
            return F.adaptive_max_pool2d(mask, size)
        if self.cfg.mask_resize == "area":
            return F.adaptive_avg_pool2d(mask, size)
        return F.interpolate(mask, size=size, mode="nearest")

    def forward(self, raw: Any, batch_size: int, device: torch.device, encode: Encode | None = None) -> Conditioning:
        if raw is None:
            raise LdmkitError('an inpainting model needs its condition: pipe(condition={"image": image, '
                              '"mask": mask}) with mask 1 (white) where to fill')
        if encode is None:
            raise LdmkitError("the inpainting condition needs the first stage's encoder (`encode`) to encode the "
                              "masked image; call it through LatentDiffusion.condition")
        image, mask = image_and_mask(raw, batch_size)
        image, mask = image.to(device), mask.to(device)
        z = encode(image * (1 - mask))  # (B, C, h, w), scaled like the diffusion latents
        return {"concat": torch.cat([z, self.resize_mask(mask, z.shape[-2:]).to(z.dtype)], dim=1)}

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        return {"concat": torch.zeros(1, 1, 1, 1, device=device)}  # broadcasts over the latent channels too


def build(cfg) -> Conditioner:
    """The concatenating conditioner of a ConditioningConfig (kinds low_res, inpaint, semantic)."""
    if cfg.kind == "low_res":
        return LowResConditioner(cfg.low_res)
    if cfg.kind == "inpaint":
        return InpaintConditioner(cfg.inpaint)
    if cfg.kind == "semantic":  # label maps: ldmkit/conditioning/semantic.py
        from ldmkit.conditioning.semantic import SemanticMap

        return SemanticMap(cfg.semantic)
    raise ConfigError(f"conditioning kind {cfg.kind!r} has no concatenating conditioner here "
                      f"(low_res, inpaint, semantic)")

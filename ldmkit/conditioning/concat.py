"""Conditions concatenated to z_t: maps at the latent's size, `{"concat": (B, C, h, w)}`.

- low_res (super-resolution, the paper's Sec. 4.4): the low-resolution image in [-1, 1], resized
  `stages` times by `multiplier` to the latent's size (CompVis' SpatialRescaler; 0 stages for an
  f = 4 first stage and x4 SR, where the LR image already has the latent's size), optionally
  mapped to `out_channels` by a 1x1 conv.
- inpaint (the paper's Sec. 4.5): the masked image image * (1 - mask) encoded by the first stage
  (`encode`), and the mask resized to the latent's size: latent_channels + 1 channels. Mask
  convention: 1 = hole (to be generated), 0 = keep; holes of the masked image are 0 (grey).
Training derives both conditions from each image (`ldmkit.data.conditions`: bicubic or BSR
degradation, LaMa-style large masks).

The null ("unconditional") condition of both is all zeros; it is (1, C, 1, 1) and broadcasts to
any batch and size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ldmkit.conditioning.base import Conditioner, Conditioning, Encode
from ldmkit.conditioning.sections import InpaintConfig, LowResConfig
from ldmkit.errors import LdmkitError, ShapeError


def check_images(x: torch.Tensor, channels: int, what: str) -> torch.Tensor:
    """x as (B, channels, H, W) float, with a clear error for anything else."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"the {what} must be a (B, {channels}, H, W) tensor, got {got}")
    return x.float()


class LowResConditioner(Conditioner):
    """`{"concat": rescale(lr)}`: a low-resolution image (B, 3, h, w) for super-resolution."""

    def __init__(self, cfg: LowResConfig):
        super().__init__()
        self.cfg = cfg
        self.concat_channels = cfg.concat_channels(0)
        if cfg.out_channels is not None:  # CompVis' name, so `cond_stage_model.channel_mapper.*` loads
            self.channel_mapper = nn.Conv2d(cfg.channels, cfg.out_channels, 1, bias=cfg.bias)

    def rescale(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C', h m^stages, w m^stages), the map concatenated to z_t."""
        x = lr
        for _ in range(self.cfg.stages):
            x = F.interpolate(x, scale_factor=self.cfg.multiplier, mode=self.cfg.method)
        return self.channel_mapper(x) if self.cfg.out_channels is not None else x

    def forward(self, lr: torch.Tensor, encode: Encode | None = None) -> Conditioning:
        return {"concat": self.rescale(check_images(lr, self.cfg.channels, "low-resolution image"))}

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        return {"concat": torch.zeros(1, self.concat_channels, 1, 1, device=device)}


class InpaintConditioner(Conditioner):
    """`{"concat": [encode(image * (1 - mask)), resize(mask)]}`: (B, latent_channels + 1, h, w)."""

    def __init__(self, cfg: InpaintConfig):
        super().__init__()
        self.cfg = cfg

    def resize_mask(self, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, 1, H, W) -> (B, 1, *size) by `mask_resize`."""
        if tuple(mask.shape[-2:]) == tuple(size):
            return mask
        if self.cfg.mask_resize == "max":
            return F.adaptive_max_pool2d(mask, size)
        if self.cfg.mask_resize == "area":
            return F.adaptive_avg_pool2d(mask, size)
        return F.interpolate(mask, size=size, mode="nearest")

    def forward(self, cond: dict[str, torch.Tensor], encode: Encode | None = None) -> Conditioning:
        if not isinstance(cond, dict) or not {"image", "mask"} <= set(cond):
            raise LdmkitError('the inpainting condition is {"image": (B, 3, H, W), "mask": (B, 1, H, W)} with '
                              f"mask 1 where to fill, got {type(cond).__name__}")
        if encode is None:
            raise LdmkitError("the inpainting condition needs the first stage's encoder (`encode`) to encode the "
                              "masked image; call it through LatentDiffusion.condition")
        image = check_images(cond["image"], 3, "inpainting image")
        mask = check_images(cond["mask"], 1, "inpainting mask")
        if image.shape[0] != mask.shape[0] or image.shape[-2:] != mask.shape[-2:]:
            raise ShapeError(f"the inpainting mask is {tuple(mask.shape)} but the image {tuple(image.shape)}; give "
                             "one mask of the image's size per image")
        z = encode(image * (1 - mask))  # (B, C, h, w), scaled like the diffusion latents
        return {"concat": torch.cat([z, self.resize_mask(mask.to(z), z.shape[-2:])], dim=1)}

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        return {"concat": torch.zeros(1, 1, 1, 1, device=device)}  # broadcasts over the latent channels too

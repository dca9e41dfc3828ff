"""Simple baselines the super-resolution and inpainting models must beat.

- `bicubic_upscale`: the LR image upsampled by bicubic interpolation.
- `mean_fill`: holes filled with the mean colour of the kept pixels of the same image.
- `harmonic_fill`: holes filled by diffusion from their border (the solution of Laplace's
  equation with the kept pixels as boundary values), solved coarse to fine: the hole is first
  filled on a 2x smaller copy, upsampled as the start, then relaxed by Jacobi iterations, so
  colours flow smoothly into large holes, like a (much simplified) Telea / Navier-Stokes fill.

Images are (B, 3, H, W) in [-1, 1]; masks (B, 1, H, W) with 1 = hole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bicubic_upscale(lr: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, 3, h, w) -> (B, 3, h factor, w factor), bicubic, clamped to [-1, 1]."""
    return F.interpolate(lr, scale_factor=factor, mode="bicubic", align_corners=False).clamp(-1, 1)


def mean_fill(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Holes set to each image's mean colour over its kept pixels."""
    keep = 1 - masks
    mean = (images * keep).sum(dim=(2, 3), keepdim=True) / keep.sum(dim=(2, 3), keepdim=True).clamp_min(1)
    return images * keep + mean * masks


def _neighbour_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of the 4 neighbours of every pixel, edges replicated. (B, C, H, W) -> (B, C, H, W)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return (p[:, :, :-2, 1:-1] + p[:, :, 2:, 1:-1] + p[:, :, 1:-1, :-2] + p[:, :, 1:-1, 2:]) / 4


def harmonic_fill(images: torch.Tensor, masks: torch.Tensor, iterations: int = 100) -> torch.Tensor:
    """Holes filled by diffusion of the surrounding colours (coarse-to-fine Jacobi relaxation)."""
    h, w = images.shape[-2:]
    holes = masks.expand_as(images) > 0.5
    if min(h, w) >= 8 and bool(holes.any()):
        # a 2x smaller copy, its pixels known where any of their 2x2 pixels is known
        keep = 1 - masks
        known = F.avg_pool2d(keep, 2, ceil_mode=True)  # (B, 1, h/2, w/2): share of known pixels
        small = F.avg_pool2d(images * keep, 2, ceil_mode=True) / known.clamp_min(1e-6)
        coarse = harmonic_fill(small, (known == 0).to(images.dtype), iterations)
        start = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    else:
        start = mean_fill(images, masks)
    x = torch.where(holes, start, images)
    for _ in range(iterations):
        x = torch.where(holes, _neighbour_mean(x), images)
    return x

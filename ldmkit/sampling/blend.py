"""Inpainting with any model by blending (diffusers' legacy inpainting, A1111's "inpaint" with a regular
model): before every model call, the known region of x_t is replaced by the known latent z0 noised to
x_t's level with fixed noise, so the model sees the known content at the right noise level and fills
the rest to match. Samplers stay unaware: this wraps the model `model(x_t, t) -> prediction`.

    x_t <- m * x_t + (1 - m) * (sqrt(abar_t) z0 + sqrt(1 - abar_t) noise)      m = 1 where to fill
"""

from __future__ import annotations

import torch

from ldmkit.diffusion.schedule import Schedule
from ldmkit.sampling.denoiser import Model
from ldmkit.sampling.sigmas import SigmaTable


def blended(model: Model, schedule: Schedule, z0: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor) -> Model:
    """`model` seeing z0 (B, C, h, w) outside mask (B, 1, h, w) (1 = fill) at every call's noise level."""
    table = SigmaTable.of(schedule, "log")

    def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = torch.tensor([1.0 / (1.0 + table.sigma(float(s)) ** 2) for s in t.tolist()], dtype=torch.float64)
        abar = abar.to(x).view(-1, *([1] * (x.ndim - 1)))  # (B, 1, 1, 1)
        known = abar.sqrt() * z0.to(x) + (1 - abar).sqrt() * noise.to(x)
        m = mask.to(x)
        return model(m * x + (1 - m) * known, t)

    return run

"""The forward process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), sampled in closed form."""

from __future__ import annotations

import torch

from ldmkit.diffusion.parameterization import expand_like
from ldmkit.diffusion.schedule import Schedule
from ldmkit.errors import LdmkitError


def abar_at(schedule: Schedule, t: torch.Tensor, batch: int) -> torch.Tensor:
    """float64 alphas_cumprod (B,) on the CPU at integer timesteps t (B,), after checking t."""
    if t.is_floating_point() or t.is_complex():
        raise LdmkitError(f"timesteps for the forward process must be integers, got dtype {t.dtype}")
    if t.ndim != 1 or t.shape[0] != batch:
        raise LdmkitError(f"timesteps must have shape ({batch},) to match the batch, got {tuple(t.shape)}")
    t = t.cpu()
    if bool((t < 0).any()) or bool((t >= schedule.num_timesteps).any()):
        raise LdmkitError(f"timesteps must lie in [0, {schedule.num_timesteps}), got {t.tolist()}")
    return schedule.alphas_cumprod[t]


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, for integer timesteps t (B,).

    The square roots are taken in float64 and then cast to x0's dtype, as CompVis' float32 buffers
    sqrt_alphas_cumprod and sqrt_one_minus_alphas_cumprod are.
    """
    if noise.shape != x0.shape:
        raise LdmkitError(f"noise shape {tuple(noise.shape)} must equal the data shape {tuple(x0.shape)}")
    abar = abar_at(schedule, t, x0.shape[0])  # (B,) float64
    return expand_like(abar.sqrt(), x0) * x0 + expand_like((1 - abar).sqrt(), x0) * noise

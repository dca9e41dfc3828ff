"""Heun's second-order sampler (Karras et al., 2022, Algorithm 1 without churn) over D(x, sigma) -> x0.

Each step takes an Euler step to s_next and corrects it with the slope there:
    d = (x - D(x, s)) / s;  x_e = x + d (s_next - s);  d' = (x_e - D(x_e, s_next)) / s_next
    x <- x + (d + d') / 2 (s_next - s)
and the last step (s_next = 0) is a plain Euler step: 2n - 1 model calls for n steps. This equals
diffusers' HeunDiscreteScheduler, whose doubled timestep list makes the same calls in the same order.
"""

from __future__ import annotations

import torch

from ldmkit.sampling.denoiser import Denoiser
from ldmkit.sampling.euler import check_sigmas
from ldmkit.sampling.progress import Callback, report


def sample_heun(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Deterministic Heun from x = x_T in sigma space (x_T ~ N(0, sigmas[0]^2 I))."""
    levels = check_sigmas(sigmas)
    for i, (s, s_next) in enumerate(zip(levels, levels[1:])):
        x0 = denoiser(x, s)
        d = (x - x0) / s
        dt = s_next - s
        if s_next == 0.0:
            x = x + d * dt
        else:
            x_euler = x + d * dt
            d_next = (x_euler - denoiser(x_euler, s_next)) / s_next
            x = x + (d + d_next) / 2 * dt
        report(callback, i=i, steps=len(levels) - 1, sigma=s, x=x, x0=x0)
    return x

"""Euler and Euler-ancestral samplers (Karras et al., 2022; k-diffusion) over a denoiser D(x, sigma) -> x0.

x lives in sigma space (x = x_t / sqrt(abar), x ~ N(x0, sigma^2 I)); `sigmas` is decreasing and ends in 0.
Euler:           d = (x - D(x, s)) / s;  x <- x + d (s_next - s)
Euler ancestral: sigma_up = min(s_next, eta sqrt(s_next^2 (s^2 - s_next^2) / s^2)),
                 sigma_down = sqrt(s_next^2 - sigma_up^2);  x <- x + d (sigma_down - s) + s_noise sigma_up noise
These equal diffusers' EulerDiscreteScheduler (s_churn = 0) and EulerAncestralDiscreteScheduler (eta = 1)
given the same sigmas and model timesteps. Differences: diffusers upcasts the sample to float32 inside
step() (ldmkit keeps x's dtype) and draws noise also on the last step, where sigma_up = 0 (ldmkit does
not draw there; the result is the same).
"""

from __future__ import annotations

import math

import torch

from ldmkit.diffusion.noise import check_generators, randn_like_per_sample
from ldmkit.errors import ConfigError
from ldmkit.sampling.denoiser import Denoiser
from ldmkit.sampling.progress import Callback, report


def check_sigmas(sigmas: torch.Tensor) -> list[float]:
    """The levels as Python floats, after checking they decrease to a final 0."""
    values = [float(s) for s in sigmas]
    if len(values) < 2 or values[-1] != 0.0 or any(a <= b for a, b in zip(values, values[1:])):
        raise ConfigError(f"sigmas must decrease strictly and end in 0, got {values}")
    return values


def ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """(sigma_down, sigma_up) of an ancestral step from sigma to sigma_next."""
    if sigma_next == 0.0 or eta == 0.0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up


def sample_euler(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Deterministic Euler from x = x_T in sigma space (x_T ~ N(0, sigmas[0]^2 I))."""
    levels = check_sigmas(sigmas)
    for i, (s, s_next) in enumerate(zip(levels, levels[1:])):
        x0 = denoiser(x, s)
        d = (x - x0) / s
        x = x + d * (s_next - s)
        report(callback, i=i, steps=len(levels) - 1, sigma=s, x=x, x0=x0)
    return x


def sample_euler_ancestral(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    generators: list[torch.Generator] | None = None,
    *,
    eta: float = 1.0,
    s_noise: float = 1.0,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Euler ancestral; per-step noise comes from the per-sample `generators`."""
    generators = check_generators(generators, x.shape[0], "Euler-ancestral sampling")
    levels = check_sigmas(sigmas)
    for i, (s, s_next) in enumerate(zip(levels, levels[1:])):
        x0 = denoiser(x, s)
        sigma_down, sigma_up = ancestral_step(s, s_next, eta)
        d = (x - x0) / s
        x = x + d * (sigma_down - s)
        if sigma_up > 0:
            x = x + randn_like_per_sample(x.shape, generators, x.device, x.dtype) * (s_noise * sigma_up)
        report(callback, i=i, steps=len(levels) - 1, sigma=s, x=x, x0=x0)
    return x

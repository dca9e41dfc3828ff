"""Entry points for the sigma-space samplers: discrete-time model + schedule -> denoiser + sigmas.

`in_sigma_space(sampler)` gives a sampler of the registry's shape
`(model, x_T, schedule, steps, generators, **options)` that builds the sigmas and the denoiser,
scales the unit-variance start noise x_T (the variance-preserving latent at the first level, as DDIM
reads it) into sigma space by sqrt(sigma_0^2 + 1), and runs `sampler(denoiser, x, sigmas, ...)`.
(k-diffusion and diffusers' Euler/Heun with "linspace" spacing scale by sigma_0 instead, which treats
the start as pure noise; the two differ by a factor sqrt(1 + 1 / sigma_0^2), 1.00007 for the LDM schedule.)
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import torch

from ldmkit.diffusion.schedule import Prediction, Schedule
from ldmkit.sampling.denoiser import Model, sigma_denoiser
from ldmkit.sampling.progress import Callback
from ldmkit.sampling.sigmas import Interpolation, sigma_schedule
from ldmkit.sampling.timesteps import Spacing


def in_sigma_space(sampler: Callable, stochastic: bool) -> Callable:
    """Wrap a k-diffusion style `sampler(denoiser, x, sigmas, [generators,] **options)`."""

    @functools.wraps(sampler)
    def run(
        model: Model,
        x: torch.Tensor,
        schedule: Schedule,
        steps: int,
        generators: list[torch.Generator] | None = None,
        *,
        prediction: Prediction = "eps",
        spacing: Spacing = "linspace",
        karras: bool = False,
        rho: float = 7.0,
        interpolation: Interpolation = "log",
        quantize_t: bool = False,
        callback: Callback | None = None,
        return_intermediates: bool = False,
        **options,
    ):
        sigmas = sigma_schedule(schedule, steps, spacing, karras, rho, interpolation)
        denoiser = sigma_denoiser(model, schedule, prediction, interpolation, quantize_t)
        x = x * math.sqrt(float(sigmas[0]) ** 2 + 1.0)
        if stochastic:
            options["generators"] = generators
        return sampler(
            denoiser, x, sigmas, callback=callback, return_intermediates=return_intermediates, **options
        )

    inner = inspect.signature(sampler).parameters
    outer = inspect.signature(run, follow_wrapped=False).parameters
    run.options = frozenset(  # type: ignore[attr-defined]
        name
        for name, p in [*outer.items(), *inner.items()]
        if p.kind is p.KEYWORD_ONLY and name != "options"
    )
    return run

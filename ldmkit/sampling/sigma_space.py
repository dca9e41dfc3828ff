"""Entry points for the sigma-space samplers: discrete-time model + schedule -> denoiser + sigmas.

`in_sigma_space(sampler)` gives a sampler of the registry's shape
`(model, x_T, schedule, steps, generators, **options)` that builds the sigmas and the denoiser,
scales the unit-variance start noise x_T (the variance-preserving latent at the first level, as DDIM
reads it) into sigma space by sqrt(sigma_0^2 + 1), and runs `sampler(denoiser, x, sigmas, ...)`.
(k-diffusion and diffusers' Euler/Heun with "linspace" spacing scale by sigma_0 instead, which treats
the start as pure noise; the two differ by a factor sqrt(1 + 1 / sigma_0^2), 1.00007 for the LDM schedule.)
The levels sit at the timesteps of `spacing` and `offset`, as the discrete samplers' (sigmas.py); without
them "linspace", k-diffusion's levels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from ldmkit.diffusion.schedule import Prediction, Schedule
from ldmkit.sampling.denoiser import Model, sigma_denoiser
from ldmkit.sampling.img2img import first_step, start_point
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
        offset: int = 0,
        karras: bool = False,
        rho: float = 7.0,
        interpolation: Interpolation = "log",
        quantize_t: bool = False,
        init: torch.Tensor | None = None,
        strength: float | None = None,
        callback: Callback | None = None,
        **options,
    ) -> torch.Tensor:
        sigmas = sigma_schedule(schedule, steps, spacing, karras, rho, interpolation, offset=offset)
        sigmas = sigmas[first_step(len(sigmas) - 1, strength, init):]  # img2img: the last steps only
        if len(sigmas) == 1:
            return init.to(x)
        denoiser = sigma_denoiser(model, schedule, prediction, interpolation, quantize_t)
        x = start_point(x, init, 1.0 / (float(sigmas[0]) ** 2 + 1.0), strength)  # VP latent at the first level
        x = x * math.sqrt(float(sigmas[0]) ** 2 + 1.0)
        if stochastic:
            options["generators"] = generators
        return sampler(denoiser, x, sigmas, callback=callback, **options)

    return run


SIGMA_OPTIONS = frozenset({"prediction", "spacing", "offset", "karras", "rho", "interpolation", "quantize_t", "init",
                           "strength", "callback"})

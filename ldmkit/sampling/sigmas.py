"""Noise levels for the sigma-space samplers (Euler, Heun, DPM++): sigma = sqrt((1 - abar) / abar).

A discrete schedule defines sigma only at integer timesteps; between them it is interpolated,
linearly in log-sigma by default (k-diffusion's DiscreteSchedule, diffusers' `_sigma_to_t`), or linearly
in sigma (`interpolation="linear"`, what diffusers' Euler/Heun schedulers use to place their sigmas).
`sigma_to_t` inverts `t_to_sigma` for the same interpolation, so a fractional timestep survives the
round trip t -> sigma -> t that the denoiser adapter makes.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Literal

import torch

from ldmkit.diffusion.schedule import Schedule
from ldmkit.errors import ConfigError
from ldmkit.sampling.timesteps import Spacing, spaced_timesteps

Interpolation = Literal["log", "linear"]


@dataclass(frozen=True)
class SigmaTable:
    """A schedule's noise levels as Python floats, ready for interpolation in either direction.

    values[t] is log(sigma_t) ("log") or sigma_t ("linear"), increasing in t.
    """

    values: tuple[float, ...]
    interpolation: Interpolation

    @classmethod
    def of(cls, schedule: Schedule, interpolation: Interpolation = "log") -> SigmaTable:
        if interpolation == "log":
            return cls(tuple(schedule.sigmas.log().tolist()), interpolation)
        if interpolation == "linear":
            return cls(tuple(schedule.sigmas.tolist()), interpolation)
        raise ConfigError(f"sigma interpolation {interpolation!r} is unknown; use 'log' or 'linear'")

    def sigma(self, t: float) -> float:
        """The noise level at a (possibly fractional) timestep t, clamped to [0, T - 1]."""
        v = self.values
        t = min(max(float(t), 0.0), len(v) - 1.0)
        low = min(int(math.floor(t)), len(v) - 2)
        w = t - low
        value = (1 - w) * v[low] + w * v[low + 1]
        return math.exp(value) if self.interpolation == "log" else value

    def t(self, sigma: float, quantize: bool = False) -> float:
        """The (fractional) timestep at noise level sigma, clamped to [0, T - 1].

        quantize=True rounds it to the nearest integer (half to even), as diffusers' DPM-Solver does
        with Karras sigmas; k-diffusion's `quantize` picks the nearest log-sigma, the same timestep.
        """
        v = self.values
        value = math.log(sigma) if self.interpolation == "log" else float(sigma)
        high = min(max(bisect.bisect_left(v, value), 1), len(v) - 1)
        low = high - 1
        w = min(max((value - v[low]) / (v[high] - v[low]), 0.0), 1.0)
        t = low + w
        return float(round(t)) if quantize else t


def t_to_sigma(t: float, schedule: Schedule, interpolation: Interpolation = "log") -> float:
    """The noise level at a (possibly fractional) timestep t in [0, T - 1]."""
    return SigmaTable.of(schedule, interpolation).sigma(t)


def sigma_to_t(sigma: float, schedule: Schedule, interpolation: Interpolation = "log", quantize: bool = False) -> float:
    """The (fractional) timestep whose noise level is sigma (see `SigmaTable.t`)."""
    return SigmaTable.of(schedule, interpolation).t(sigma, quantize)


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """(steps + 1,) float64 Karras et al. (2022) levels from sigma_max down to sigma_min, then 0."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def sigma_schedule(
    schedule: Schedule,
    steps: int,
    spacing: Spacing = "linspace",
    karras: bool = False,
    rho: float = 7.0,
    interpolation: Interpolation = "log",
    timesteps: list[float] | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """(steps + 1,) decreasing float64 sigmas ending in 0 for a sigma-space sampler.

    Without `karras`, the levels of the timesteps the discrete samplers would visit with the same
    `spacing` and `offset` (timesteps.py; default: linspace(T - 1, 0, steps), as k-diffusion does), as
    diffusers' Euler, Heun and DPM++ schedulers place them for their timestep_spacing and steps_offset
    (with interpolation="linear" between training timesteps); explicit `timesteps` (decreasing) override
    the spacing. With `karras`, `steps` Karras levels between the first and last of those levels.
    """
    if timesteps is None:
        timesteps = spaced_timesteps(schedule.num_timesteps, steps, spacing, offset).flip(0).tolist()
    table = SigmaTable.of(schedule, interpolation)
    sigmas = torch.tensor([table.sigma(t) for t in timesteps], dtype=torch.float64)
    if karras:
        return karras_sigmas(len(timesteps), float(sigmas[-1]), float(sigmas[0]), rho)
    return torch.cat([sigmas, sigmas.new_zeros(1)])

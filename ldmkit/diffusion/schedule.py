"""Noise schedules over T discrete steps: betas and the cumulative products alphas_cumprod.

Three schedules, computed in float64 as the CompVis code does:

- "scaled_linear": betas = linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2. This is the schedule
  of the LDM paper; CompVis' code calls it "linear" (and diffusers "scaled_linear", the name used here).
  LDM: beta 0.0015 -> 0.0195; Stable Diffusion: 0.00085 -> 0.012.
- "linear": betas = linspace(beta_start, beta_end, T) (DDPM's schedule; CompVis' "sqrt_linear").
- "cosine": Nichol & Dhariwal (2021), alphas_cumprod(t) = f(t + 1) / f(0) with
  f(t) = cos^2((t / T + s) / (1 + s) * pi / 2), s = 0.008, betas clipped to at most 0.999.

A `Schedule` keeps the float64 tables and hands out the float32 copy that CompVis stores in its
buffers (`alphas_cumprod_f32`), which its samplers read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ldmkit.errors import ConfigError

ScheduleName = Literal["scaled_linear", "linear", "cosine"]
Prediction = Literal["eps", "x0", "v"]
PREDICTIONS = ("eps", "x0", "v")


def check_prediction(prediction: str, what: str = "prediction") -> None:
    """A clear error for anything but eps, x0 or v (`what` names the setting)."""
    if prediction not in PREDICTIONS:
        raise ConfigError(f"{what} {prediction!r} is unknown; use 'eps', 'x0' or 'v'")

COSINE_MAX_BETA = 0.999


@dataclass(frozen=True)
class DiffusionConfig:
    """The forward process and the training target.

    schedule: "scaled_linear" (the LDM paper's schedule, called "linear" in CompVis' configs),
    "linear" (plain, CompVis' "sqrt_linear") or "cosine" (beta_start/beta_end unused).
    prediction: what the network outputs: "eps" (the paper's), "x0" or "v".
    min_snr_gamma: None for the plain loss, else the gamma of min-SNR weighting (5.0 in Hang et al.).
    timestep_spacing, steps_offset: which timesteps the discrete samplers (DDPM, DDIM, PLMS) visit
    with fewer steps than T, as diffusers' scheduler configs say it ("leading" with offset 1 is CompVis'
    and Stable Diffusion v1's; "trailing", "linspace"; "uniform" is CompVis' own rule, which fails for
    step counts that do not divide T). See ldmkit/sampling/timesteps.py.
    """

    schedule: ScheduleName = "scaled_linear"
    timesteps: int = 1000
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    cosine_s: float = 0.008
    prediction: Prediction = "eps"
    min_snr_gamma: float | None = None
    timestep_spacing: Literal["leading", "trailing", "linspace", "uniform"] = "leading"
    steps_offset: int = 1
    # The training distribution of noise levels: "uniform" over the T timesteps (the paper's), or "lognormal":
    # log sigma ~ N(lognormal_mean, lognormal_std^2), as EDM draws it, taken at the nearest timestep.
    timestep_sampling: Literal["uniform", "lognormal"] = "uniform"
    lognormal_mean: float = -0.5  # EDM's -1.2 for data of std 0.5; latents here have std 1: -1.2 + log 2
    lognormal_std: float = 1.2

    def __post_init__(self) -> None:
        if self.schedule not in ("scaled_linear", "linear", "cosine"):
            raise ConfigError(
                f"diffusion schedule {self.schedule!r} is unknown; use 'scaled_linear' (CompVis calls it "
                "'linear'), 'linear' (CompVis' 'sqrt_linear') or 'cosine'"
            )
        check_prediction(self.prediction, "diffusion prediction")
        if self.timesteps < 2:
            raise ConfigError(f"diffusion timesteps must be at least 2, got {self.timesteps}")
        if self.schedule != "cosine" and not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ConfigError(
                f"diffusion betas must satisfy 0 < beta_start <= beta_end < 1, got "
                f"{self.beta_start} -> {self.beta_end}"
            )
        if self.min_snr_gamma is not None and self.min_snr_gamma <= 0:
            raise ConfigError(f"min_snr_gamma must be positive or null, got {self.min_snr_gamma}")
        if self.timestep_spacing not in ("leading", "trailing", "linspace", "uniform"):
            raise ConfigError(f"diffusion timestep_spacing {self.timestep_spacing!r} is unknown; use leading, "
                              "trailing, linspace or uniform")
        if self.timestep_sampling not in ("uniform", "lognormal"):
            raise ConfigError(f"diffusion timestep_sampling {self.timestep_sampling!r} is unknown; use uniform or "
                              "lognormal")
        if self.lognormal_std <= 0:
            raise ConfigError(f"diffusion lognormal_std must be positive, got {self.lognormal_std}")
        if not 0 <= self.steps_offset < self.timesteps:
            raise ConfigError(f"diffusion steps_offset must be in [0, {self.timesteps}), got {self.steps_offset}")


def make_betas(
    schedule: ScheduleName,
    timesteps: int,
    beta_start: float = 0.0015,
    beta_end: float = 0.0195,
    cosine_s: float = 0.008,
) -> torch.Tensor:
    """The (T,) float64 betas of a named schedule (see the module docstring for the formulas)."""
    if schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=torch.float64) ** 2
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    if schedule == "cosine":
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps + cosine_s
        f = torch.cos(steps / (1 + cosine_s) * math.pi / 2) ** 2  # (T + 1,)
        f = f / f[0]
        return (1 - f[1:] / f[:-1]).clamp(min=0.0, max=COSINE_MAX_BETA)
    raise ConfigError(f"diffusion schedule {schedule!r} is unknown; use 'scaled_linear', 'linear' or 'cosine'")


@dataclass(frozen=True, eq=False)
class Schedule:
    """The discrete forward process: betas (T,) and alphas_cumprod (T,), float64 on the CPU.

    Index t in [0, T) is the DDPM timestep the UNet sees; alphas_cumprod[t] = prod_{s <= t} (1 - betas[s]).
    """

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor

    def __post_init__(self) -> None:
        if self.betas.ndim != 1 or self.betas.shape != self.alphas_cumprod.shape:
            raise ConfigError(
                f"a schedule needs 1-D betas and alphas_cumprod of one length, got "
                f"{tuple(self.betas.shape)} and {tuple(self.alphas_cumprod.shape)}"
            )
        a = self.alphas_cumprod
        if not bool(((a > 0) & (a < 1)).all()) or not bool((a[1:] <= a[:-1]).all()):
            raise ConfigError("alphas_cumprod must lie in (0, 1) and not increase with t")

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> Schedule:
        betas = torch.as_tensor(betas, dtype=torch.float64).cpu()
        return cls(betas=betas, alphas_cumprod=torch.cumprod(1.0 - betas, dim=0))

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: torch.Tensor) -> Schedule:
        """A schedule from a foreign table (e.g. a checkpoint's buffer), kept exactly as given."""
        a = torch.as_tensor(alphas_cumprod, dtype=torch.float64).cpu()
        prev = torch.cat([a.new_ones(1), a[:-1]])
        return cls(betas=1.0 - a / prev, alphas_cumprod=a)

    @classmethod
    def from_config(cls, cfg: DiffusionConfig) -> Schedule:
        return cls.from_betas(make_betas(cfg.schedule, cfg.timesteps, cfg.beta_start, cfg.beta_end, cfg.cosine_s))

    @property
    def num_timesteps(self) -> int:
        return self.betas.shape[0]

    @property
    def alphas_cumprod_f32(self) -> torch.Tensor:
        """(T,) float32: the copy CompVis registers as a buffer and its DDIM/PLMS samplers read."""
        return self.alphas_cumprod.to(torch.float32)

    @property
    def sigmas(self) -> torch.Tensor:
        """(T,) float64 noise levels of the variance-exploding view: sqrt((1 - abar) / abar)."""
        return ((1.0 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()

    @property
    def snr(self) -> torch.Tensor:
        """(T,) float64 signal-to-noise ratio abar / (1 - abar)."""
        return self.alphas_cumprod / (1.0 - self.alphas_cumprod)

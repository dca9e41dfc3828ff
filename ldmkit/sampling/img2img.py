"""Starting a sampler part-way, from a given sample: SDEdit (Meng et al., 2022), "img2img".

With `init` (the clean latent z0 of an image) and `strength` s in [0, 1], a sampler whose schedule
has n steps runs only its last int(s n) of them (diffusers' rounding), starting from z0 noised to
the level where those begin with the start noise x_T as the noise:
    x_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) x_T          (variance-preserving form)
s = 1 starts from x_T itself, as without an init (pure noise: the init is ignored); s = 0 runs no
step and returns z0. Every sampler takes `init` and `strength` this way.
"""

from __future__ import annotations

import math

import torch

from ldmkit.errors import ConfigError


def first_step(n: int, strength: float | None, init: torch.Tensor | None) -> int:
    """Index of the first of n steps to run."""
    if init is None:
        if strength is not None:
            raise ConfigError("strength sets how much of an init image to keep; give the init image too")
        return 0
    check_strength(strength)
    return n - min(int(n * strength), n)


def check_strength(strength) -> None:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise ConfigError(f"strength must be in [0, 1] (0: keep the init image, 1: ignore it), got {strength!r}")


def start_point(x_T: torch.Tensor, init: torch.Tensor | None, abar: float, strength: float | None) -> torch.Tensor:
    """The sampler's starting x_t (variance-preserving): x_T without an init or at strength 1, else the
    init noised to `abar` with x_T as the noise."""
    if init is None or strength == 1.0:
        return x_T
    if init.shape != x_T.shape:
        raise ConfigError(f"the init latent has shape {tuple(init.shape)} but the samples {tuple(x_T.shape)}")
    return math.sqrt(abar) * init.to(x_T) + math.sqrt(1.0 - abar) * x_T

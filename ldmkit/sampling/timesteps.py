"""Which of the T training timesteps a sampler visits, for each named spacing.

All functions return the timesteps in increasing order as a float64 tensor; samplers walk it backwards.
- "uniform" (CompVis DDIM/PLMS): c = T // S, [i + 1 for i in range(0, T, c)]. This has more than S
  entries when S does not divide T (e.g. 31 for S = 30), exactly as CompVis' make_ddim_timesteps.
- "quadratic" (CompVis): (linspace(0, sqrt(0.8 T), S) ** 2).astype(int) + 1.
- "leading" (diffusers): arange(S) * (T // S) + offset; with offset=1 it equals "uniform" when S divides T.
  An offset that would step past T - 1 (offset 1 with S = T) is reduced to stay in range, so any S works.
- "trailing" (diffusers): round(arange(T, 0, -T / S)) - 1, so the first step starts at T - 1.
- "linspace" (diffusers' Euler/Heun default): linspace(0, T - 1, S), fractional unless (T - 1) / (S - 1)
  is an integer; the discrete samplers round it, as diffusers' PNDM and DDIM do.
- None (the default of DDIM and PLMS called without a spacing): "uniform" where it stays within
  [0, T - 1], else "leading" with offset 1 (CompVis' walk cut to S timesteps). "uniform" ends on t = T
  when T // S divides T - 1 (for T = 1000: S = 3, 9, 27, 36, 37, 101-111, 251-333, 501-1000), so every
  other count keeps CompVis' walk.
The sigma-space samplers take the same spacings and place their levels at these timesteps (sigmas.py).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from ldmkit.errors import ConfigError

Spacing = Literal["uniform", "quadratic", "leading", "trailing", "linspace"]
SPACINGS = ("uniform", "quadratic", "leading", "trailing", "linspace")


def spaced_timesteps(num_timesteps: int, steps: int, spacing: Spacing | None = None, offset: int = 0) -> torch.Tensor:
    """Increasing (n,) float64 timesteps; `offset` is added to "leading" only (diffusers' steps_offset)."""
    T = num_timesteps
    if not 1 <= steps <= T:
        raise ConfigError(f"sampling steps must be between 1 and the {T} training timesteps, got {steps}")
    if spacing is None:  # CompVis' rule where it stays in range, else the same walk cut to `steps`
        spacing, offset = ("leading", 1) if (T - 1) % (T // steps) == 0 else ("uniform", offset)
    if spacing == "uniform":
        ts = np.asarray(list(range(0, T, T // steps))) + 1
    elif spacing == "quadratic":
        ts = ((np.linspace(0, np.sqrt(T * 0.8), steps)) ** 2).astype(int) + 1
    elif spacing == "leading":
        ts = np.arange(0, steps) * (T // steps) + min(offset, T - 1 - (steps - 1) * (T // steps))
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / steps))[::-1] - 1
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, steps)
    else:
        raise ConfigError(f"timestep spacing {spacing!r} is unknown; use one of {', '.join(SPACINGS)}")
    ts = torch.from_numpy(np.asarray(ts, dtype=np.float64))
    if bool((ts < 0).any()) or bool((ts > T - 1).any()):
        raise ConfigError(
            f"{spacing} spacing with {steps} steps (offset {offset}) visits timesteps outside [0, {T - 1}]: "
            f"{ts.tolist()}; use fewer steps or another spacing"
        )
    return ts


def discrete_timesteps(num_timesteps: int, steps: int, spacing: Spacing | None = None, offset: int = 0) -> list[int]:
    """The same as `spaced_timesteps`, rounded to the integers a discrete-time sampler feeds the UNet.

    Like CompVis, this keeps repeated timesteps ("quadratic" with many steps starts 1, 1, 1, 2, ...);
    a step between equal timesteps leaves x unchanged.
    """
    return spaced_timesteps(num_timesteps, steps, spacing, offset).round().long().tolist()

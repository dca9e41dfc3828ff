"""Samplers: plain functions that turn start noise into a sample with a denoising model.

Contract
--------
A sampler never holds state. Each takes the start noise, the schedule and explicit random sources,
reports every step through `callback(dict)` (progress bars, previews and intermediates all go
there) and returns the sample.

- The model is a discrete-time callable `model(x_t, t) -> prediction`: x_t (B, ...), t (B,) DDPM
  timesteps in [0, T), the prediction eps, x0 or v (say which with `prediction=`). Conditioning and
  guidance are bound beforehand by `guidance.conditioned` / `guidance.classifier_free_guidance`
  around the UNet `unet(x_t, t, context=None, concat=None, y=None)`.
- DDPM, DDIM and PLMS call the model with int64 t. Euler, Euler-a, Heun and DPM++(2M) run a
  k-diffusion style denoiser `D(x, sigma) -> x0` (`denoiser.sigma_denoiser`), with
  sigma = sqrt((1 - abar) / abar) and x = x_t * sqrt(sigma^2 + 1); the model then receives a
  floating-point t (B,) found by log-sigma interpolation, fractional between training timesteps
  (int64 with quantize_t=True), so the UNet's timestep embedding must accept float t.
- Per-image seeds: `generators` is a list of one torch.Generator per sample; the start noise
  (`ldmkit.diffusion.noise.randn_like_per_sample`) and every per-step noise of sample i come from generators[i] only,
  so an image is the same whatever the batch it is in, given a batch-independent model.
- x_T is unit-variance noise for every sampler. The sigma-space samplers read it as the
  variance-preserving latent at their first level and start from x_T * sqrt(sigma_0^2 + 1)
  (sigma_space.py); all samplers return a sample in data (latent) space.
- Nothing is tied to a device or dtype: everything follows x_T's. Schedule tables stay float64 on
  the CPU; per-step coefficients are cast to x_T's dtype and device.
- Randomness: ddpm, euler_a and ddim with eta > 0 need `generators`; the others ignore them.

Entry point
-----------
    x0 = sample("ddim", model, x_T, schedule, steps=50, generators=gens, eta=0.0)
SAMPLERS maps names to functions with that signature:
    ddpm     ancestral DDPM (ddpm.py)              ddim      DDIM, eta and spacing (ddim.py)
    plms     CompVis' PLMS (plms.py)                euler     Euler (euler.py)
    euler_a  Euler ancestral (euler.py)             heun      Heun (heun.py)
    dpmpp_2m DPM-Solver++(2M) (dpm_solver.py)
Every sampler takes spacing ("uniform", "quadratic", "leading", "trailing", "linspace") and offset
(timesteps.py); the sigma-space ones step through the levels of those timesteps (sigmas.py).
Discrete options: final_alpha ("first" as CompVis, "one"; ddim, plms), eta (ddim), clip_x0 (ddpm).
Sigma-space options: karras, rho, interpolation ("log", "linear"), quantize_t, plus eta/s_noise for
euler_a. Defaults follow CompVis (DDIM's "uniform" spacing where it stays within [0, T - 1], else
"leading" with offset 1; a_prev = abar[0] at the last step) and k-diffusion ("linspace").
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ldmkit.diffusion.schedule import Schedule
from ldmkit.errors import ConfigError
from ldmkit.sampling.ddim import sample_ddim
from ldmkit.sampling.ddpm import sample_ddpm
from ldmkit.sampling.denoiser import Model
from ldmkit.sampling.dpm_solver import sample_dpmpp_2m
from ldmkit.sampling.euler import sample_euler, sample_euler_ancestral
from ldmkit.sampling.heun import sample_heun
from ldmkit.sampling.plms import sample_plms
from ldmkit.sampling.sigma_space import SIGMA_OPTIONS, in_sigma_space

# What `ldmkit sample`, `eval`, `upscale`, `inpaint`, the server and the Python API sample with unless told
# otherwise: the best trade-off measured in docs/results/RECIPE.md (FD-EffNet of the main job's model against
# seconds per image: Euler ancestral at 30 steps is within 2 % of DDPM-200 at an eighth of its time, where
# deterministic DDIM-50 is 35 % worse on short-trained models).
DEFAULT_SAMPLER = "euler_a"
DEFAULT_STEPS = 30

DISCRETE = frozenset({"prediction", "spacing", "offset", "init", "strength", "callback"})
# name -> (sampler, the keyword options it takes)
SAMPLERS: dict[str, tuple[Callable, frozenset[str]]] = {
    "ddpm": (sample_ddpm, DISCRETE | {"clip_x0"}),
    "ddim": (sample_ddim, DISCRETE | {"eta", "final_alpha"}),
    "plms": (sample_plms, DISCRETE | {"final_alpha"}),
    "euler": (in_sigma_space(sample_euler, stochastic=False), SIGMA_OPTIONS),
    "euler_a": (in_sigma_space(sample_euler_ancestral, stochastic=True), SIGMA_OPTIONS | {"eta", "s_noise"}),
    "heun": (in_sigma_space(sample_heun, stochastic=False), SIGMA_OPTIONS),
    "dpmpp_2m": (in_sigma_space(sample_dpmpp_2m, stochastic=False), SIGMA_OPTIONS),
}


def sample(
    name: str,
    model: Model,
    x_T: torch.Tensor,
    schedule: Schedule,
    steps: int,
    generators: list[torch.Generator] | None = None,
    **options,
) -> torch.Tensor:
    """Run sampler `name` from start noise x_T (B, ...) ~ N(0, I); options go to the sampler."""
    accepted = sampler_options(name)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"sampler {name!r} has no option {', '.join(unknown)}; it takes {', '.join(sorted(accepted))}"
        )
    return SAMPLERS[name][0](model, x_T, schedule, steps, generators, **options)


def sampler_options(name: str) -> frozenset[str]:
    """The keyword options sampler `name` accepts."""
    if name not in SAMPLERS:
        raise ConfigError(f"sampler {name!r} is unknown; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name][1]

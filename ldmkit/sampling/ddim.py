"""DDIM (Song et al., 2021) exactly as CompVis' DDIMSampler computes it, plus diffusers' variants.

For the walked timesteps tau (increasing, see `timesteps.py`), step i goes from tau[i] to tau[i-1]:
    a_t = abar[tau[i]], a_prev = abar[tau[i-1]]   (at i = 0: abar[0], or 1.0 with final_alpha="one")
    sigma = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    pred_x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t)          (never clipped)
    x = sqrt(a_prev) pred_x0 + sqrt(1 - a_prev - sigma^2) eps + sigma * noise
CompVis precision: a_t and a_prev come from the float32 copy of alphas_cumprod, the square roots are
taken in float32 and sigma in float64 from those float32 values (then rounded to float32); the
coefficients are then cast to x's dtype, so a float32 run repeats CompVis' arithmetic.

diffusers' DDIMScheduler is the same update with timestep_spacing="leading", steps_offset=1,
set_alpha_to_one=False, clip_sample=False reproducing CompVis (when S divides T). Differences:
- diffusers' default set_alpha_to_one=True ends on a_prev = 1.0: pass final_alpha="one".
- CompVis' "uniform" spacing has ceil(T / (T // S)) steps when S does not divide T; "leading" has S.
- diffusers steps from t to t - T // S rather than to the next walked timestep; the two agree for
  "leading" spacing and whenever S divides T.
"""

from __future__ import annotations

from typing import Literal

import torch

from ldmkit.diffusion.noise import check_generators, randn_like_per_sample
from ldmkit.diffusion.schedule import Prediction, Schedule
from ldmkit.errors import ConfigError
from ldmkit.sampling.denoiser import Model, eps_model
from ldmkit.sampling.img2img import first_step, start_point
from ldmkit.sampling.progress import Callback, report
from ldmkit.sampling.timesteps import Spacing, discrete_timesteps

FinalAlpha = Literal["first", "one"]


def ddim_coefficients(
    schedule: Schedule, timesteps: list[int], eta: float = 0.0, final_alpha: FinalAlpha = "first"
) -> dict[str, torch.Tensor]:
    """Per walked timestep (n,) float32: a_t, a_prev, sigma and sqrt(1 - a_t), as CompVis computes them."""
    if final_alpha not in ("first", "one"):
        raise ConfigError(f"final_alpha {final_alpha!r} is unknown; use 'first' (CompVis) or 'one'")
    abar = schedule.alphas_cumprod_f32
    a_t = abar[timesteps]  # (n,) float32
    first = abar[:1] if final_alpha == "first" else torch.ones(1, dtype=torch.float32)
    a_prev = torch.cat([first, a_t[:-1]])  # (n,) float32
    a_t64, a_prev64 = a_t.double(), a_prev.double()
    sigma = eta * ((1 - a_prev64) / (1 - a_t64) * (1 - a_t64 / a_prev64)).sqrt()
    return {"a_t": a_t, "a_prev": a_prev, "sigma": sigma.float(), "sqrt_one_minus_at": (1 - a_t).sqrt()}


def ddim_update(
    x: torch.Tensor,
    eps: torch.Tensor,
    coefficients: dict[str, torch.Tensor],
    index: int,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step at walked index `index`: (x at the previous timestep, pred_x0)."""
    a_t, a_prev = coefficients["a_t"][index], coefficients["a_prev"][index]  # float32 scalars
    sigma = coefficients["sigma"][index]
    sqrt_at, sqrt_aprev = a_t.sqrt(), a_prev.sqrt()
    dir_coef = (1.0 - a_prev - sigma**2).clamp(min=0).sqrt()
    like = {"device": x.device, "dtype": x.dtype}
    pred_x0 = (x - coefficients["sqrt_one_minus_at"][index].to(**like) * eps) / sqrt_at.to(**like)
    x_prev = sqrt_aprev.to(**like) * pred_x0 + dir_coef.to(**like) * eps
    if noise is not None:
        x_prev = x_prev + sigma.to(**like) * noise
    return x_prev, pred_x0


def sample_ddim(
    model: Model,
    x: torch.Tensor,
    schedule: Schedule,
    steps: int,
    generators: list[torch.Generator] | None = None,
    *,
    prediction: Prediction = "eps",
    eta: float = 0.0,
    spacing: Spacing | None = None,
    offset: int = 0,
    final_alpha: FinalAlpha = "first",
    init: torch.Tensor | None = None,
    strength: float | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DDIM from x = x_T (B, ...), or from `init` at `strength` (img2img.py); eta > 0 draws per-step noise
    from the per-sample `generators`. Without a `spacing` it walks CompVis' "uniform" timesteps where they
    stay within [0, T - 1], else "leading" with offset 1 (3, 9, 300 steps, ...; timesteps.py), so any step
    count works and the counts CompVis takes keep its result."""
    if not 0 <= eta <= 1:
        raise ConfigError(f"DDIM eta must be in [0, 1], got {eta}; use 0 (deterministic) to 1")
    if eta > 0:
        generators = check_generators(generators, x.shape[0], "DDIM with eta > 0")
    taus = discrete_timesteps(schedule.num_timesteps, steps, spacing, offset)
    coefficients = ddim_coefficients(schedule, taus, eta, final_alpha)
    predict_eps = eps_model(model, schedule, prediction)
    walk = list(reversed(range(len(taus))))[first_step(len(taus), strength, init):]
    if not walk:
        return init.to(x)
    x = start_point(x, init, float(schedule.alphas_cumprod[taus[walk[0]]]), strength)
    for i, index in enumerate(walk):
        t = torch.full((x.shape[0],), taus[index], dtype=torch.int64, device=x.device)  # (B,)
        eps = predict_eps(x, t)
        noise = randn_like_per_sample(x.shape, generators, x.device, x.dtype) if eta > 0 else None
        x, pred_x0 = ddim_update(x, eps, coefficients, index, noise)
        report(callback, i=i, steps=len(walk), t=taus[index], x=x, x0=pred_x0)
    return x

"""DDPM ancestral sampling (Ho et al., 2020) with the "fixed small" posterior variance.

Step from walked timestep t to the previous one s (abar_s = 1 after the last, t = 0 for full T steps):
    alpha = abar_t / abar_s, beta = 1 - alpha
    x0 = sqrt(1 / abar_t) x - sqrt(1 / abar_t - 1) eps          (optionally clipped to [-c, c])
    mean = beta sqrt(abar_s) / (1 - abar_t) x0 + (1 - abar_s) sqrt(alpha) / (1 - abar_t) x
    x = mean + exp(0.5 log(max(var, 1e-20))) noise,  var = beta (1 - abar_s) / (1 - abar_t), noise only for t > 0
With steps = T this is CompVis' p_sample_loop; its coefficients are computed in float64 and kept in
float32, as CompVis' buffers are. Fewer steps stride the chain (diffusers' DDPMScheduler with
num_inference_steps, "leading" spacing). CompVis' p_sample_loop clips x0 to [-1, 1] by default
(clip_denoised=True, inherited by LatentDiffusion); ldmkit does not clip unless clip_x0 is given, since
latents are not bounded to [-1, 1] (pass clip_x0=1.0 to reproduce it). diffusers' DDPMScheduler clips
by default too (clip_sample=True).
"""

from __future__ import annotations

import math

import torch

from ldmkit.diffusion.noise import check_generators, randn_like_per_sample
from ldmkit.diffusion.schedule import Prediction, Schedule
from ldmkit.errors import ConfigError
from ldmkit.sampling.denoiser import Model, eps_model
from ldmkit.sampling.img2img import first_step, start_point
from ldmkit.sampling.progress import Callback, report
from ldmkit.sampling.timesteps import Spacing, discrete_timesteps


def ddpm_coefficients(abar_t: float, abar_s: float) -> dict[str, torch.Tensor]:
    """float32 scalars of one step from abar_t to abar_s (computed in float64, as CompVis does)."""
    alpha = abar_t / abar_s
    beta = 1.0 - alpha
    var = beta * (1.0 - abar_s) / (1.0 - abar_t)
    values = {
        "recip": math.sqrt(1.0 / abar_t),
        "recipm1": math.sqrt(1.0 / abar_t - 1.0),
        "coef_x0": beta * math.sqrt(abar_s) / (1.0 - abar_t),
        "coef_xt": (1.0 - abar_s) * math.sqrt(alpha) / (1.0 - abar_t),
        "log_var": math.log(max(var, 1e-20)),
    }
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in values.items()}


def sample_ddpm(
    model: Model,
    x: torch.Tensor,
    schedule: Schedule,
    steps: int | None = None,
    generators: list[torch.Generator] | None = None,
    *,
    prediction: Prediction = "eps",
    spacing: Spacing = "leading",
    offset: int = 0,
    clip_x0: float | None = None,
    init: torch.Tensor | None = None,
    strength: float | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Ancestral DDPM from x = x_T (B, ...) over `steps` (default: all T) timesteps, or from `init` at
    `strength` (img2img.py)."""
    if clip_x0 is not None and clip_x0 <= 0:
        raise ConfigError(f"clip_x0 must be positive or None, got {clip_x0}")
    generators = check_generators(generators, x.shape[0], "DDPM sampling")
    taus = discrete_timesteps(schedule.num_timesteps, steps or schedule.num_timesteps, spacing, offset)
    abar = schedule.alphas_cumprod  # (T,) float64
    predict_eps = eps_model(model, schedule, prediction)
    like = {"device": x.device, "dtype": x.dtype}
    walk = list(reversed(range(len(taus))))[first_step(len(taus), strength, init):]
    if not walk:
        return init.to(x)
    x = start_point(x, init, float(abar[taus[walk[0]]]), strength)
    for i, index in enumerate(walk):
        t = taus[index]
        c = ddpm_coefficients(float(abar[t]), float(abar[taus[index - 1]]) if index > 0 else 1.0)
        eps = predict_eps(x, torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device))
        x0 = c["recip"].to(**like) * x - c["recipm1"].to(**like) * eps
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
        x = c["coef_x0"].to(**like) * x0 + c["coef_xt"].to(**like) * x
        if t > 0:
            noise = randn_like_per_sample(x.shape, generators, x.device, x.dtype)
            x = x + (0.5 * c["log_var"]).exp().to(**like) * noise
        report(callback, i=i, steps=len(walk), t=t, x=x, x0=x0)
    return x

"""DPM-Solver++(2M) (Lu et al., 2022), the multistep second-order solver, over D(x, sigma) -> x0.

With lambda = -log(sigma), h = lambda_next - lambda and the ratio r = h_prev / h:
    first step:  x <- (s_next / s) x - expm1(-h) D0
    later steps: x <- (s_next / s) x - expm1(-h) ((1 + 1 / (2r)) D0 - 1 / (2r) D_prev)
    last step (s_next = 0): x <- D0
This is k-diffusion's sample_dpmpp_2m in sigma space. diffusers' DPMSolverMultistepScheduler
(algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", final_sigmas_type="zero")
computes the same update in the variance-preserving space x_t = x / sqrt(sigma^2 + 1); it places its
timesteps at linspace(0, T - 1, S + 1).round() without the 0 (pass those `timesteps` to
`sigma_schedule` to reproduce it), rounds the timesteps of Karras sigmas (`quantize_t=True`),
and upcasts the sample to float32 inside step().
"""

from __future__ import annotations

import math

import torch

from ldmkit.sampling.denoiser import Denoiser
from ldmkit.sampling.euler import check_sigmas
from ldmkit.sampling.progress import Callback, report


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Deterministic DPM-Solver++(2M) from x = x_T in sigma space (x_T ~ N(0, sigmas[0]^2 I))."""
    levels = check_sigmas(sigmas)
    x0_prev: torch.Tensor | None = None
    for i, (s, s_next) in enumerate(zip(levels, levels[1:])):
        x0 = denoiser(x, s)
        if s_next == 0.0:
            x = x0
        else:
            h = math.log(s) - math.log(s_next)
            if x0_prev is None:
                direction = x0
            else:
                r = (math.log(levels[i - 1]) - math.log(s)) / h
                direction = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
            x = (s_next / s) * x - math.expm1(-h) * direction
        x0_prev = x0
        report(callback, i=i, steps=len(levels) - 1, sigma=s, x=x, x0=x0)
    return x

"""PLMS (Liu et al., 2022, "pseudo linear multi-step") as CompVis' PLMSSampler runs it.

It walks the same timesteps as DDIM (eta = 0, same a_prev at the last step) and replaces eps in the
DDIM update by an Adams-Bashforth combination of the current and up to three previous eps:
    first step: pseudo improved Euler, e' = (eps(x, t) + eps(x_ddim, t_next)) / 2, one extra model call;
    then (3 e - e1) / 2, (23 e - 16 e1 + 5 e2) / 12, (55 e - 59 e1 + 37 e2 - 9 e3) / 24.
The history holds the plain eps(x, t) of each step, not the combinations.

diffusers' PNDMScheduler(skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False) with "leading"
spacing performs the same computation when S divides T: its timestep list repeats the first PLMS
timestep to make the improved-Euler call, and its update (PNDM's formula 9) is algebraically the DDIM
step with eta = 0 (equal up to rounding). What differs: diffusers' defaults steps_offset=0 (timesteps
0, 100, ... instead of CompVis' 1, 101, ...) and skip_prk_steps=False, which warms up with Runge-Kutta
steps (PNDM proper; ldmkit does not implement it); diffusers has exactly S steps where CompVis'
"uniform" spacing has more when S does not divide T; and PNDMScheduler has no eta (neither has PLMS).
"""

from __future__ import annotations

import torch

from ldmkit.diffusion.schedule import Prediction, Schedule
from ldmkit.sampling.ddim import FinalAlpha, ddim_coefficients, ddim_update
from ldmkit.sampling.denoiser import Model, eps_model
from ldmkit.sampling.img2img import first_step, start_point
from ldmkit.sampling.progress import Callback, report
from ldmkit.sampling.timesteps import Spacing, discrete_timesteps


def plms_eps(eps: torch.Tensor, history: list[torch.Tensor]) -> torch.Tensor:
    """The multi-step eps from the current eps and the previous ones (oldest first), 1 to 3 of them."""
    if len(history) == 1:
        return (3 * eps - history[-1]) / 2
    if len(history) == 2:
        return (23 * eps - 16 * history[-1] + 5 * history[-2]) / 12
    return (55 * eps - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24


def sample_plms(
    model: Model,
    x: torch.Tensor,
    schedule: Schedule,
    steps: int,
    generators: list[torch.Generator] | None = None,
    *,
    prediction: Prediction = "eps",
    spacing: Spacing | None = None,
    offset: int = 0,
    final_alpha: FinalAlpha = "first",
    init: torch.Tensor | None = None,
    strength: float | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """PLMS from x = x_T (B, ...), or from `init` at `strength` (img2img.py); deterministic, so
    `generators` is unused. Without a `spacing` it walks the timesteps DDIM's default does (timesteps.py)."""
    taus = discrete_timesteps(schedule.num_timesteps, steps, spacing, offset)
    coefficients = ddim_coefficients(schedule, taus, 0.0, final_alpha)
    predict_eps = eps_model(model, schedule, prediction)

    def at(t: int) -> torch.Tensor:
        return torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device)  # (B,)

    walk = list(reversed(range(len(taus))))[first_step(len(taus), strength, init):]
    if not walk:
        return init.to(x)
    x = start_point(x, init, float(schedule.alphas_cumprod[taus[walk[0]]]), strength)
    history: list[torch.Tensor] = []
    for i, index in enumerate(walk):
        eps = predict_eps(x, at(taus[index]))
        if not history:
            x_euler, _ = ddim_update(x, eps, coefficients, index)
            eps_next = predict_eps(x_euler, at(taus[max(index - 1, 0)]))
            eps_prime = (eps + eps_next) / 2
        else:
            eps_prime = plms_eps(eps, history)
        x, pred_x0 = ddim_update(x, eps_prime, coefficients, index)
        history = [*history[-2:], eps]
        report(callback, i=i, steps=len(walk), t=taus[index], x=x, x0=pred_x0)
    return x

"""The two model contracts the samplers take, as small wrappers around a network callable.

- Discrete time (DDPM, DDIM, PLMS): `eps_model(model, schedule, prediction)` turns
  `model(x_t, t) -> eps | x0 | v` into `model(x_t, t) -> eps`, t integer (B,).
- Sigma space (Euler, Heun, DPM++): `sigma_denoiser(model, schedule, prediction)` is a k-diffusion style
  denoiser `D(x, sigma) -> x0` for x = x_t / sqrt(abar) = x_t * sqrt(sigma^2 + 1): it calls
  `model(x / sqrt(sigma^2 + 1), t)` with t = sigma_to_t(sigma) (fractional unless `quantize_t`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ldmkit.diffusion.noising import abar_at
from ldmkit.diffusion.parameterization import expand_like, to_eps
from ldmkit.diffusion.schedule import Prediction, Schedule, check_prediction
from ldmkit.sampling.sigmas import Interpolation, SigmaTable

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


def eps_model(model: Model, schedule: Schedule, prediction: Prediction = "eps") -> Model:
    """`model(x_t, t) -> eps` for a model that predicts eps, x0 or v at integer timesteps t (B,)."""
    check_prediction(prediction)
    if prediction == "eps":
        return model

    def predict_eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = expand_like(abar_at(schedule, t, x_t.shape[0]), x_t)  # (B, 1, ..., 1)
        return to_eps(model(x_t, t), x_t, abar, prediction)

    return predict_eps


def sigma_denoiser(
    model: Model,
    schedule: Schedule,
    prediction: Prediction = "eps",
    interpolation: Interpolation = "log",
    quantize_t: bool = False,
) -> Denoiser:
    """`D(x, sigma) -> x0` (k-diffusion's contract, one sigma for the batch) over a discrete-time model.

    The model sees x_t = x / sqrt(sigma^2 + 1) and t = sigma_to_t(sigma) as a (B,) tensor: floating
    point (at least float32) in general, int64 when `quantize_t`. Its output converts to x0 with
    the same sigma: eps -> x - sigma eps; v -> x / (sigma^2 + 1) - v sigma / sqrt(sigma^2 + 1).
    """
    check_prediction(prediction)
    table = SigmaTable.of(schedule, interpolation)

    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        c_in = 1.0 / math.sqrt(sigma**2 + 1.0)
        t = table.t(sigma, quantize_t)
        t_dtype = torch.int64 if quantize_t else torch.promote_types(x.dtype, torch.float32)
        t_batch = torch.full((x.shape[0],), t, dtype=t_dtype, device=x.device)  # (B,)
        out = model(x * c_in, t_batch)
        if prediction == "eps":
            return x - sigma * out
        if prediction == "x0":
            return out
        return x * c_in**2 - out * (sigma * c_in)

    return denoise

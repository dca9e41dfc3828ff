"""Conversions between what a network may predict: eps (noise), x0 (clean sample) and v.

With alpha = sqrt(abar_t) and sigma = sqrt(1 - abar_t), the forward process is
x_t = alpha * x0 + sigma * eps, and v = alpha * eps - sigma * x0 (Salimans & Ho, 2022). Hence
    x0  = (x_t - sigma * eps) / alpha = alpha * x_t - sigma * v
    eps = (x_t - alpha * x0) / sigma  = sigma * x_t + alpha * v
Every function takes abar already broadcast against x_t (see `expand_like`).
"""

from __future__ import annotations

import torch

from ldmkit.diffusion.schedule import Prediction, check_prediction


def expand_like(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample values (B,) as (B, 1, ..., 1) in x's dtype and device, ready to broadcast."""
    return values.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def to_eps(pred: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor, prediction: Prediction) -> torch.Tensor:
    """The noise implied by a network output of kind `prediction` at x_t."""
    check_prediction(prediction)
    if prediction == "eps":
        return pred
    if prediction == "x0":
        return (x_t - abar.sqrt() * pred) / (1 - abar).sqrt()
    return (1 - abar).sqrt() * x_t + abar.sqrt() * pred


def to_x0(pred: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor, prediction: Prediction) -> torch.Tensor:
    """The clean sample implied by a network output of kind `prediction` at x_t."""
    check_prediction(prediction)
    if prediction == "x0":
        return pred
    if prediction == "eps":
        return (x_t - (1 - abar).sqrt() * pred) / abar.sqrt()
    return abar.sqrt() * x_t - (1 - abar).sqrt() * pred


def target(prediction: Prediction, x0: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """What a network of kind `prediction` should output for x_t built from (x0, eps)."""
    check_prediction(prediction)
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    return abar.sqrt() * eps - (1 - abar).sqrt() * x0

"""The simple diffusion loss L = E_{t, eps} || target - model(x_t, t) ||^2, optionally min-SNR weighted.

The target is eps (the LDM paper's L_simple), x0 or v. With min-SNR-gamma weighting
(Hang et al., 2023) each sample's loss is weighted so that, measured in x0-space, its weight
is min(SNR_t, gamma), SNR_t = abar_t / (1 - abar_t). Since
||eps_err||^2 = SNR ||x0_err||^2 and ||v_err||^2 = (SNR + 1) ||x0_err||^2 at fixed x_t:
    eps target: w = min(SNR, gamma) / SNR
    x0 target:  w = min(SNR, gamma)
    v target:   w = min(SNR, gamma) / (SNR + 1)
The model is any callable model(x_t, t) -> prediction with conditioning already bound.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ldmkit.diffusion.noise import RandomSource, randint_from, randn_from
from ldmkit.diffusion.noising import abar_at, q_sample
from ldmkit.diffusion.parameterization import expand_like, target
from ldmkit.diffusion.schedule import Prediction, Schedule
from ldmkit.errors import ConfigError

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def min_snr_weight(snr: torch.Tensor, prediction: Prediction, gamma: float) -> torch.Tensor:
    """Per-sample min-SNR-gamma weights for a loss on the `prediction` target (formulas above)."""
    clipped = snr.clamp(max=gamma)
    if prediction == "eps":
        return clipped / snr
    if prediction == "x0":
        return clipped
    if prediction == "v":
        return clipped / (snr + 1)
    raise ConfigError(f"prediction {prediction!r} is unknown; use 'eps', 'x0' or 'v'")


def loss_per_sample(
    model: Model,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    schedule: Schedule,
    prediction: Prediction = "eps",
    min_snr_gamma: float | None = None,
) -> torch.Tensor:
    """(B,) weighted mean squared error over all non-batch dimensions, for given t (B,) and noise."""
    x_t = q_sample(x0, t, noise, schedule)  # (B, ...)
    pred = model(x_t, t)
    if pred.shape != x0.shape:
        raise ConfigError(f"the model returned shape {tuple(pred.shape)}; it must match x_t {tuple(x0.shape)}")
    abar = abar_at(schedule, t, x0.shape[0])  # (B,) float64
    goal = target(prediction, x0, noise, expand_like(abar, x0))
    dtype = torch.promote_types(torch.promote_types(pred.dtype, goal.dtype), torch.float32)
    loss = (pred.to(dtype) - goal.to(dtype)).pow(2).flatten(1).mean(dim=1)  # (B,), at least float32
    if min_snr_gamma is not None:
        loss = loss * min_snr_weight(abar / (1 - abar), prediction, min_snr_gamma).to(loss)
    return loss


def lognormal_timesteps(schedule: Schedule, batch: int, generator: RandomSource, mean: float, std: float,
                        device: torch.device | str) -> torch.Tensor:
    """(B,) timesteps whose noise levels sigma follow log sigma ~ N(mean, std^2) (EDM's training
    distribution), each the timestep of the nearest sigma in log space."""
    log_sigma = mean + std * randn_from((batch,), generator, "cpu", torch.float64)  # (B,)
    table = schedule.sigmas.log()  # (T,) increasing
    t = torch.searchsorted(table, log_sigma).clamp(1, len(table) - 1)  # the level above, or the last one
    nearer_below = (log_sigma - table[t - 1]) < (table[t] - log_sigma)
    return (t - nearer_below.long()).to(device)


def diffusion_loss(
    model: Model,
    x0: torch.Tensor,
    schedule: Schedule,
    generator: RandomSource,
    prediction: Prediction = "eps",
    min_snr_gamma: float | None = None,
    lognormal: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Scalar loss with t ~ U{0, ..., T-1} (or `lognormal` (mean, std) in log sigma) and eps ~ N(0, I)
    drawn from `generator`.

    `generator` is one torch.Generator for the batch, or a list with one per sample (then sample i's
    t and noise come from generators[i] alone). t is drawn first, then the noise.
    """
    if lognormal is None:
        t = randint_from(schedule.num_timesteps, x0.shape[0], generator, x0.device)  # (B,)
    else:
        t = lognormal_timesteps(schedule, x0.shape[0], generator, *lognormal, x0.device)  # (B,)
    noise = randn_from(x0.shape, generator, x0.device, x0.dtype)  # (B, ...)
    return loss_per_sample(model, x0, t, noise, schedule, prediction, min_snr_gamma).mean()

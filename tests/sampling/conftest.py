"""Toy models for the sampler tests: batch-independent, deterministic, cheap."""

import math

import pytest
import torch

from ldmkit.diffusion.schedule import DiffusionConfig, Schedule
from ldmkit.sampling.sigmas import SigmaTable


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: intra-op threads only add fork/join waits on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed nonlinear eps(x, t); mixes features within a sample only (roll), never across the batch."""
    tt = t.to(x.dtype).reshape(-1, *[1] * (x.ndim - 1)) / 1000
    return torch.tanh(0.9 * x + 0.4 * x.roll(1, dims=-1) - 0.3) * (0.5 + tt) + 0.2 * torch.sin(3 * tt + x)


def abar_of(t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """(B,) float64 abar at integer timesteps, or at fractional ones through the log-sigma interpolation."""
    if not t.is_floating_point():
        return schedule.alphas_cumprod[t.cpu()]
    table = SigmaTable.of(schedule)
    return torch.tensor([1 / (1 + table.sigma(v) ** 2) for v in t.tolist()], dtype=torch.float64)


@pytest.fixture
def toy():
    return toy_eps


@pytest.fixture
def ldm_schedule():
    return Schedule.from_config(DiffusionConfig())


def gaussian_eps(mu: float, s: float, schedule: Schedule):
    """The exact eps-denoiser for data ~ N(mu, s^2 I): E[x0 | x_t] is linear in x_t.

    Samplers give the whole batch one t, so the coefficients are Python floats (cheap, exact).
    """

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        (a,) = abar_of(t[:1], schedule).tolist()
        assert bool((t == t[0]).all()), "the Gaussian toy expects one timestep per batch"
        gain = s**2 * math.sqrt(a) / (a * s**2 + 1 - a)
        x0 = mu + gain * (x - math.sqrt(a) * mu)
        return (x - math.sqrt(a) * x0) / math.sqrt(1 - a)

    return model


def gaussian_flow(x_T: torch.Tensor, mu: float, s: float, abar_start: float) -> torch.Tensor:
    """Where the exact probability-flow ODE for data N(mu, s^2 I) takes x_T started at abar_start."""
    a = abar_start
    return mu + s * (x_T - math.sqrt(a) * mu) / math.sqrt(a * s**2 + 1 - a)


def as_prediction(eps_model, schedule: Schedule, prediction: str):
    """The same model re-expressed as an x0- or v-predicting network."""

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = abar_of(t, schedule).to(x).reshape(-1, *[1] * (x.ndim - 1))
        eps = eps_model(x, t)
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        return x0 if prediction == "x0" else a.sqrt() * eps - (1 - a).sqrt() * x0

    return model


@pytest.fixture
def gaussian_model():
    return gaussian_eps


@pytest.fixture
def exact_flow():
    return gaussian_flow


@pytest.fixture
def reparameterize():
    return as_prediction

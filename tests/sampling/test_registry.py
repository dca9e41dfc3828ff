"""The entry point `sample(name, ...)`: names, options, callbacks (intermediates go through them), dtypes."""

import inspect

import pytest
import torch

from ldmkit.diffusion.noise import randn_like_per_sample, seeded_generators
from ldmkit.errors import ConfigError, LdmkitError
from ldmkit.sampling import SAMPLERS, sample, sampler_options

NAMES = ["ddpm", "ddim", "plms", "euler", "euler_a", "heun", "dpmpp_2m"]


def test_registry_names():
    assert list(SAMPLERS) == NAMES


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_callback_reports_every_step_and_the_sampler_returns_x(name, dtype, toy, ldm_schedule):
    gens = seeded_generators([0, 1])
    x_T = randn_like_per_sample((2, 3, 4), gens, "cpu", dtype)
    reports = []
    x = sample(name, toy, x_T, ldm_schedule, 6, gens, callback=reports.append)
    assert isinstance(x, torch.Tensor) and x.dtype == dtype and x.shape == x_T.shape and torch.isfinite(x).all()
    steps = 7 if name in ("ddim", "plms") else 6  # uniform spacing, c = 166: 7 timesteps
    assert [r["i"] for r in reports] == list(range(steps)) and all(r["steps"] == steps for r in reports)
    assert all(("t" in r) != ("sigma" in r) for r in reports)
    assert all(r["x0"].shape == x.shape for r in reports)
    assert torch.equal(reports[-1]["x"], x)


@pytest.mark.parametrize("name", NAMES)
def test_the_registry_lists_exactly_the_options_each_sampler_takes(name):
    from ldmkit.sampling.sigma_space import SIGMA_OPTIONS

    fn, options = SAMPLERS[name]
    inner = inspect.unwrap(fn)  # sigma-space samplers: the wrapped k-diffusion style function
    keywords = {p.name for p in inspect.signature(inner).parameters.values() if p.kind is p.KEYWORD_ONLY}
    if inner is not fn:
        keywords |= SIGMA_OPTIONS
    assert keywords == options


def test_options_are_checked(toy, ldm_schedule):
    x = torch.zeros(1, 2)
    with pytest.raises(ConfigError, match="unknown; choose one of ddpm, ddim"):
        sample("lms", toy, x, ldm_schedule, 5)
    with pytest.raises(ConfigError, match="has no option eta"):
        sample("euler", toy, x, ldm_schedule, 5, eta=0.5)
    assert "karras" in sampler_options("dpmpp_2m") and "eta" in sampler_options("euler_a")
    assert "karras" not in sampler_options("ddim")


def test_stochastic_samplers_need_generators(toy, ldm_schedule):
    x = torch.zeros(2, 2)
    for name, options in (("ddpm", {}), ("ddim", {"eta": 1.0}), ("euler_a", {})):
        with pytest.raises(LdmkitError, match="per-sample torch.Generators"):
            sample(name, toy, x, ldm_schedule, 5, **options)
        with pytest.raises(LdmkitError, match="pass one per sample"):
            sample(name, toy, x, ldm_schedule, 5, seeded_generators([1]), **options)


@pytest.mark.parametrize("name", NAMES)
def test_every_step_count_works_without_a_spacing(name, toy, ldm_schedule):
    """The library defaults (DDIM/PLMS: CompVis' walk or leading, DDPM: leading, sigma samplers: linspace)
    take the counts CompVis' "uniform" rule cannot (timesteps outside [0, 999])."""
    gens = seeded_generators([0])
    x_T = randn_like_per_sample((1, 2), gens, "cpu", torch.float32)
    for steps in (1, 3, 9, 300, 999, 1000):
        reports = []
        x = sample(name, toy, x_T, ldm_schedule, steps, gens, callback=reports.append)
        assert len(reports) == steps and torch.isfinite(x).all()

"""The entry point `sample(name, ...)`: names, options, callbacks, intermediates, dtypes."""

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
def test_callback_intermediates_and_dtype(name, dtype, toy, ldm_schedule):
    gens = seeded_generators([0, 1])
    x_T = randn_like_per_sample((2, 3, 4), gens, "cpu", dtype)
    reports = []
    x, inter = sample(name, toy, x_T, ldm_schedule, 6, gens, callback=reports.append, return_intermediates=True)
    assert x.dtype == dtype and x.shape == x_T.shape and torch.isfinite(x).all()
    steps = 7 if name in ("ddim", "plms") else 6  # uniform spacing, c = 166: 7 timesteps
    assert [r["i"] for r in reports] == list(range(steps)) and all(r["steps"] == steps for r in reports)
    assert all(("t" in r) != ("sigma" in r) for r in reports)
    assert len(inter["x"]) == len(inter["x0"]) == steps
    assert torch.equal(inter["x"][-1], x)


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

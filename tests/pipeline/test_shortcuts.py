"""The sampling shortcuts through the Pipeline: guidance in an interval, feature caching, Karras levels."""

import pytest
import torch

from ldmkit.errors import ConfigError
from ldmkit.pipeline import Pipeline
from ldmkit.sampling import SAMPLERS
from ldmkit.sampling.timesteps import discrete_timesteps

from .test_img2img import class_model, pixel_model


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(class_model())


def test_an_interval_over_every_level_is_plain_guidance_and_one_over_none_is_no_guidance(pipe):
    def z(guidance: float, interval=None):
        return pipe.latents([0], torch.tensor([1]), 4, "euler", guidance, guidance_interval=interval)

    assert torch.equal(z(3.0), z(3.0, (0.0, 1e9)))
    assert torch.equal(z(1.0), z(3.0, (1e8, 1e9)))
    part = z(3.0, (0.0, 2.0))  # the last steps only (sigma 11.0 and 2.8 are above the interval)
    assert not torch.equal(part, z(3.0)) and not torch.equal(part, z(1.0))
    image = pipe(n=1, steps=4, condition=1, guidance=3.0, sampler="euler", guidance_interval=(0.0, 2.0))[0]
    assert '"guidance_interval": [0.0, 2.0]' in image.info["ldmkit"]


def test_cache_interval_1_is_exact_and_larger_ones_change_the_sample_a_little(pipe):
    def z(interval=None):
        return pipe.latents([0], torch.tensor([2]), 6, "ddim", 2.0, cache_interval=interval)

    plain = z()
    torch.testing.assert_close(z(1), plain, atol=1e-5, rtol=0)
    cached = z(3)
    assert not torch.equal(cached, plain) and (cached - plain).abs().mean() < 0.2 * plain.abs().mean()


def test_karras_levels_and_the_shortcuts_refuse_what_they_cannot_do(pipe):
    assert pipe(n=1, steps=3, condition=0, sampler="dpmpp_2m", karras=True)[0].size == (16, 16)
    with pytest.raises(ConfigError, match="Karras noise levels are for the sigma-space samplers"):
        pipe(n=1, steps=3, condition=0, sampler="ddim", karras=True)
    with pytest.raises(ConfigError, match="set guidance above 1"):
        pipe(n=1, steps=3, condition=0, guidance_interval=(0.1, 5.0))
    with pytest.raises(ConfigError, match="0 <= low < high"):
        pipe(n=1, steps=3, condition=0, guidance=2.0, guidance_interval=(5.0, 1.0))
    with pytest.raises(ConfigError, match="cache interval must be a whole number >= 1|feature-cache interval"):
        Pipeline(pixel_model())(n=1, steps=3, cache_interval=0)


@pytest.fixture(scope="module")
def pixel_pipe():
    return Pipeline(pixel_model())


@pytest.mark.parametrize("steps", [3, 9, 300])  # (every count: tests/sampling/test_timesteps.py)
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_step_counts_that_do_not_divide_1000_work_with_the_models_spacing(pixel_pipe, steps, sampler):
    """Every sampler walks the model config's spacing ("leading" with offset 1 by default, SD v1's): the
    discrete ones its timesteps, the sigma-space ones the noise levels of those timesteps."""
    reports = []
    pixel_pipe(n=1, steps=steps, sampler=sampler, callback=reports.append)
    assert len(reports) == steps  # one report per step (PLMS' extra first call is inside its first step)
    diffusion = pixel_pipe.config.diffusion
    first = discrete_timesteps(diffusion.timesteps, steps, diffusion.timestep_spacing, diffusion.steps_offset)[-1]
    if "sigma" in reports[0]:
        assert reports[0]["sigma"] == pytest.approx(float(pixel_pipe.model.schedule.sigmas[first]))
    else:
        assert reports[0]["t"] == first

import math

import pytest
import torch

from ldmkit.config import from_dict, to_dict
from ldmkit.diffusion.schedule import COSINE_MAX_BETA, DiffusionConfig, Schedule, make_betas
from ldmkit.errors import ConfigError


def test_scaled_linear_closed_form():
    betas = make_betas("scaled_linear", 1000, 0.0015, 0.0195)
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert float(betas[0]) == pytest.approx(0.0015, rel=1e-14)
    assert float(betas[-1]) == pytest.approx(0.0195, rel=1e-14)
    k = 321
    root = math.sqrt(0.0015) + k / 999 * (math.sqrt(0.0195) - math.sqrt(0.0015))
    assert float(betas[k]) == pytest.approx(root**2, rel=1e-13)
    sd = make_betas("scaled_linear", 1000, 0.00085, 0.012)
    assert float(sd[0]) == pytest.approx(0.00085, rel=1e-14) and float(sd[-1]) == pytest.approx(0.012, rel=1e-14)


def test_linear_closed_form():
    betas = make_betas("linear", 1000, 1e-4, 0.02)
    assert float(betas[0]) == pytest.approx(1e-4) and float(betas[-1]) == pytest.approx(0.02)
    assert float(betas[500]) == pytest.approx(1e-4 + 500 / 999 * (0.02 - 1e-4), rel=1e-13)


def test_cosine_closed_form():
    T, s = 1000, 0.008
    schedule = Schedule.from_betas(make_betas("cosine", T))

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    for t in (0, 10, 500, 900):
        assert float(schedule.alphas_cumprod[t]) == pytest.approx(f(t + 1) / f(0), rel=1e-10)
    assert float(schedule.betas.max()) == COSINE_MAX_BETA == float(schedule.betas[-1])


def test_cumulative_products_and_views():
    schedule = Schedule.from_config(DiffusionConfig())
    abar = schedule.alphas_cumprod
    assert abar.dtype == torch.float64
    assert float(abar[2]) == pytest.approx(float((1 - schedule.betas[:3]).prod()), rel=1e-15)
    assert schedule.alphas_cumprod_f32.dtype == torch.float32
    assert torch.equal(schedule.alphas_cumprod_f32, abar.float())
    torch.testing.assert_close(schedule.sigmas, ((1 - abar) / abar).sqrt())
    torch.testing.assert_close(schedule.snr, 1 / schedule.sigmas**2)
    again = Schedule.from_alphas_cumprod(abar)
    torch.testing.assert_close(again.betas, schedule.betas, rtol=1e-10, atol=0)
    assert schedule.num_timesteps == 1000


@pytest.mark.parametrize(
    "ours, theirs",
    [("scaled_linear", "scaled_linear"), ("linear", "linear"), ("cosine", "squaredcos_cap_v2")],
)
def test_matches_diffusers_tables(ours, theirs):
    diffusers = pytest.importorskip("diffusers")
    reference = diffusers.DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule=theirs)
    schedule = Schedule.from_config(DiffusionConfig(schedule=ours, beta_start=0.00085, beta_end=0.012))
    # diffusers computes in float32; ldmkit in float64 (as CompVis)
    torch.testing.assert_close(schedule.betas.float(), reference.betas, rtol=2e-6, atol=0)
    torch.testing.assert_close(schedule.alphas_cumprod.float(), reference.alphas_cumprod, rtol=2e-5, atol=0)


def test_config_validation_and_yaml_round_trip():
    cfg = DiffusionConfig(schedule="cosine", prediction="v", min_snr_gamma=5.0)
    assert from_dict(DiffusionConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="CompVis calls it 'linear'"):
        DiffusionConfig(schedule="sqrt_linear")
    with pytest.raises(ConfigError, match="'eps', 'x0' or 'v'"):
        DiffusionConfig(prediction="epsilon")
    with pytest.raises(ConfigError, match="beta_start <= beta_end"):
        DiffusionConfig(beta_start=0.02, beta_end=0.01)
    with pytest.raises(ConfigError, match="min_snr_gamma"):
        DiffusionConfig(min_snr_gamma=0.0)
    with pytest.raises(ConfigError, match="not increase"):
        Schedule.from_alphas_cumprod(torch.tensor([0.5, 0.9]))

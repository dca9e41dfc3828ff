"""eps-, x0- and v-predicting versions of one model give the same samples with every sampler."""

import pytest
import torch

from ldmkit.diffusion.noise import randn_like_per_sample, seeded_generators
from ldmkit.errors import ConfigError
from ldmkit.sampling import SAMPLERS, sample
from ldmkit.sampling.denoiser import eps_model, sigma_denoiser


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_parameterisations_agree(name, prediction, toy, ldm_schedule, reparameterize):
    def run(model, pred):
        gens = seeded_generators([1, 2])
        x_T = randn_like_per_sample((2, 3, 4), gens, "cpu", torch.float64)
        return sample(name, model, x_T, ldm_schedule, 10, gens, prediction=pred)

    reference = run(toy, "eps")
    converted = run(reparameterize(toy, ldm_schedule, prediction), prediction)
    torch.testing.assert_close(converted, reference, rtol=1e-7, atol=1e-9)


def test_sigma_denoiser_formulas(ldm_schedule):
    x = torch.linspace(-2, 2, 6, dtype=torch.float64).reshape(2, 3)
    out = torch.full_like(x, 0.3)

    def constant(x_t, t):
        return out

    sigma = float(ldm_schedule.sigmas[400])
    c_in = (sigma**2 + 1) ** -0.5
    eps_d = sigma_denoiser(constant, ldm_schedule, "eps")(x, sigma)
    torch.testing.assert_close(eps_d, x - sigma * out)
    torch.testing.assert_close(sigma_denoiser(constant, ldm_schedule, "x0")(x, sigma), out)
    v_d = sigma_denoiser(constant, ldm_schedule, "v")(x, sigma)
    torch.testing.assert_close(v_d, c_in**2 * x - sigma * c_in * out)


def test_model_inputs_from_the_adapter(ldm_schedule):
    seen = {}

    def model(x_t, t):
        seen.update(x_t=x_t, t=t)
        return torch.zeros_like(x_t)

    sigma = float(ldm_schedule.sigmas[250])
    x = torch.ones(2, 3, dtype=torch.float64)
    sigma_denoiser(model, ldm_schedule)(x, sigma)
    assert seen["t"].dtype == torch.float64 and seen["t"].tolist() == pytest.approx([250.0, 250.0])
    torch.testing.assert_close(seen["x_t"], x / (sigma**2 + 1) ** 0.5)
    sigma_denoiser(model, ldm_schedule, quantize_t=True)(x.float(), float(ldm_schedule.sigmas[250]) * 1.001)
    assert seen["t"].dtype == torch.int64 and seen["t"].tolist() == [250, 250]


def test_unknown_prediction(toy, ldm_schedule):
    with pytest.raises(ConfigError, match="'eps', 'x0' or 'v'"):
        eps_model(toy, ldm_schedule, "score")
    with pytest.raises(ConfigError, match="'eps', 'x0' or 'v'"):
        sigma_denoiser(toy, ldm_schedule, "score")

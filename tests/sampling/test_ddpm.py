import math

import pytest
import torch

from ldmkit.diffusion.noise import seeded_generators
from ldmkit.sampling import sample
from ldmkit.sampling.ddpm import ddpm_coefficients


def test_full_chain_visits_every_timestep(ldm_schedule):
    seen = []

    def model(x, t):
        seen.append(int(t[0]))
        return torch.zeros_like(x)

    sample("ddpm", model, torch.zeros(1, 2), ldm_schedule, None, seeded_generators([0]))
    assert seen == list(range(999, -1, -1))


def test_coefficients_are_the_posterior_of_q(ldm_schedule):
    abar, betas = ldm_schedule.alphas_cumprod, ldm_schedule.betas
    t = 500
    c = ddpm_coefficients(float(abar[t]), float(abar[t - 1]))
    beta, a_t, a_s = float(betas[t]), float(abar[t]), float(abar[t - 1])
    assert float(c["coef_x0"]) == pytest.approx(beta * math.sqrt(a_s) / (1 - a_t), rel=1e-6)
    assert float(c["coef_xt"]) == pytest.approx((1 - a_s) * math.sqrt(1 - beta) / (1 - a_t), rel=1e-6)
    assert math.exp(float(c["log_var"])) == pytest.approx(beta * (1 - a_s) / (1 - a_t), rel=1e-5)
    assert all(v.dtype == torch.float32 for v in c.values())
    assert math.exp(float(ddpm_coefficients(float(abar[0]), 1.0)["log_var"])) == pytest.approx(1e-20, rel=1e-5)


def test_clip_x0(ldm_schedule):
    reports = []
    x_T = 3 * torch.ones(2, 4)
    gens = seeded_generators([0, 1])
    sample("ddpm", lambda x, t: -x, x_T, ldm_schedule, 10, gens, clip_x0=1.0, callback=reports.append)
    assert max(float(r["x0"].abs().max()) for r in reports) <= 1.0

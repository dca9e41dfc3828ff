"""DDIM reproduces CompVis' arithmetic bit for bit in float32 (the conventions listed in ddim.py)."""

import numpy as np
import pytest
import torch

from ldmkit.diffusion.noise import randn_like_per_sample, seeded_generators
from ldmkit.sampling import sample
from ldmkit.sampling.ddim import ddim_coefficients


def reference_ddim(model, x, alphas_cumprod_f64, steps, eta, step_noise):
    """CompVis' DDIM written out: float32 table, float64 sigma, float32 per-step arithmetic."""
    T = alphas_cumprod_f64.shape[0]
    table = alphas_cumprod_f64.to(torch.float32)
    taus = np.arange(0, T, T // steps) + 1
    a = table[taus]  # float32
    a_prev = np.array([float(table[0])] + [float(v) for v in table[taus[:-1]]])  # float64 of float32 values
    sigma = eta * np.sqrt((1 - a_prev) / (1 - a.double().numpy()) * (1 - a.double().numpy() / a_prev))
    root_one_minus_a = (1.0 - a).sqrt()  # float32
    for i, index in enumerate(range(len(taus) - 1, -1, -1)):
        def full(value):
            return torch.full((x.shape[0], 1, 1, 1), float(value), dtype=torch.float32)

        a_t, a_p, s_t = full(a[index]), full(a_prev[index]), full(sigma[index])
        eps = model(x, torch.full((x.shape[0],), int(taus[index]), dtype=torch.long))
        pred_x0 = (x - full(root_one_minus_a[index]) * eps) / a_t.sqrt()
        x = a_p.sqrt() * pred_x0 + (1.0 - a_p - s_t**2).sqrt() * eps + s_t * step_noise[i]
    return x


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_bitwise_compvis(toy, ldm_schedule, eta):
    gens = seeded_generators([5, 6])
    x_T = randn_like_per_sample((2, 3, 4, 4), gens, "cpu", torch.float32)
    ours = sample("ddim", toy, x_T, ldm_schedule, 10, gens, eta=eta)
    replay = seeded_generators([5, 6])
    randn_like_per_sample((2, 3, 4, 4), replay, "cpu", torch.float32)  # the start noise
    noise = [randn_like_per_sample((2, 3, 4, 4), replay, "cpu", torch.float32) if eta > 0 else 0.0 for _ in range(10)]
    expected = reference_ddim(toy, x_T, ldm_schedule.alphas_cumprod, 10, eta, noise)
    assert torch.equal(ours, expected)


def test_unet_sees_shifted_timesteps_and_last_a_prev(ldm_schedule):
    seen = []

    def model(x, t):
        seen.append(int(t[0]))
        return torch.zeros_like(x)

    sample("ddim", model, torch.zeros(1, 2), ldm_schedule, 10)
    assert seen == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
    c = ddim_coefficients(ldm_schedule, [1, 101, 201], eta=1.0)
    table = ldm_schedule.alphas_cumprod_f32
    assert c["a_prev"][0] == table[0] and c["a_prev"][1] == table[1] and c["a_t"][2] == table[201]
    assert float(c["sigma"][0]) > 0  # the last step still has noise, as a_prev = abar[0] < 1
    assert ddim_coefficients(ldm_schedule, [1, 101], final_alpha="one")["a_prev"][0] == 1.0


def test_step_counts_compvis_cannot_take_walk_leading_with_offset_1(ldm_schedule):
    """`sample("ddim", ..., 3)` without a spacing: CompVis' rule would end on t = 1000; the default cuts its
    walk to the 3 steps asked for (timesteps.py), and keeps CompVis' walk where it stays in range."""
    seen = []

    def model(x, t):
        seen.append(int(t[0]))
        return torch.zeros_like(x)

    sample("ddim", model, torch.zeros(1, 2), ldm_schedule, 3)
    assert seen == [667, 334, 1]
    seen.clear()
    sample("ddim", model, torch.zeros(1, 2), ldm_schedule, 30)
    assert len(seen) == 31 and seen[0] == 991  # CompVis' c = 33: 31 timesteps, as before


def test_eta_zero_is_deterministic_without_generators(toy, ldm_schedule):
    x_T = randn_like_per_sample((2, 3), seeded_generators([1, 2]), "cpu", torch.float32)
    assert torch.equal(sample("ddim", toy, x_T, ldm_schedule, 5), sample("ddim", toy, x_T, ldm_schedule, 5))


@pytest.mark.parametrize("eta", [-0.5, 1.5, float("nan")])
def test_eta_outside_0_to_1_is_refused(toy, ldm_schedule, eta):
    from ldmkit.errors import ConfigError

    x_T = randn_like_per_sample((1, 3), seeded_generators([1]), "cpu", torch.float32)
    with pytest.raises(ConfigError, match=r"DDIM eta must be in \[0, 1\]"):  # (above 1: sqrt of a negative, NaNs)
        sample("ddim", toy, x_T, ldm_schedule, 5, seeded_generators([1]), eta=eta)

import pytest
import torch

from ldmkit.diffusion.loss import diffusion_loss, loss_per_sample, min_snr_weight
from ldmkit.diffusion.noise import seeded_generators
from ldmkit.diffusion.parameterization import expand_like, target
from ldmkit.diffusion.schedule import DiffusionConfig, Schedule
from ldmkit.errors import ConfigError

SCHEDULE = Schedule.from_config(DiffusionConfig())
PREDICTIONS = ["eps", "x0", "v"]


def data(batch=6):
    return torch.randn(batch, 2, 4, 4, generator=torch.Generator().manual_seed(42), dtype=torch.float64)


def oracle(x0, prediction, offset=None):
    """The true target, recovered from x_t and the known clean data, plus an optional perturbation."""

    def model(x_t, t):
        abar = expand_like(SCHEDULE.alphas_cumprod[t], x_t)
        eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        out = target(prediction, x0, eps, abar)
        return out if offset is None else out + offset

    return model


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_true_target_minimises_the_loss(prediction):
    x0 = data()
    gen = torch.Generator().manual_seed(0)
    assert float(diffusion_loss(oracle(x0, prediction), x0, SCHEDULE, gen, prediction)) < 1e-20
    small, large = 0.01 * torch.ones_like(x0), 0.02 * torch.ones_like(x0)
    loss_small, loss_large = (
        diffusion_loss(oracle(x0, prediction, offset), x0, SCHEDULE, torch.Generator().manual_seed(0), prediction)
        for offset in (small, large)
    )
    assert float(loss_small) == pytest.approx(1e-4, rel=1e-6)  # MSE of a constant 0.01 error
    assert float(loss_large) == pytest.approx(4 * float(loss_small), rel=1e-6)


def test_min_snr_weights_formula():
    snr = torch.tensor([0.01, 1.0, 5.0, 100.0], dtype=torch.float64)
    gamma = 5.0
    clipped = torch.tensor([0.01, 1.0, 5.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(min_snr_weight(snr, "eps", gamma), clipped / snr)
    torch.testing.assert_close(min_snr_weight(snr, "x0", gamma), clipped)
    torch.testing.assert_close(min_snr_weight(snr, "v", gamma), clipped / (snr + 1))
    with pytest.raises(ConfigError):
        min_snr_weight(snr, "score", gamma)


def test_min_snr_weighted_losses_agree_in_x0_space():
    # One x0 error, expressed as each parameterisation's output error, costs min(SNR, gamma) |dx0|^2.
    x0 = data(4)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = torch.tensor([5, 200, 600, 990])
    abar = expand_like(SCHEDULE.alphas_cumprod[t], x0)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    x0_hat = x0 + 0.05
    eps_hat = (x_t - abar.sqrt() * x0_hat) / (1 - abar).sqrt()
    outputs = {"eps": eps_hat, "x0": x0_hat, "v": target("v", x0_hat, eps_hat, abar)}
    snr = SCHEDULE.snr[t]
    expected = snr.clamp(max=5.0) * 0.05**2
    for prediction, out in outputs.items():
        loss = loss_per_sample(lambda x, tt, o=out: o, x0, t, noise, SCHEDULE, prediction, min_snr_gamma=5.0)
        torch.testing.assert_close(loss, expected, rtol=1e-8, atol=0)


def test_per_sample_generators_make_each_loss_independent_of_the_batch():
    x0 = data(3)
    model = oracle(x0, "eps", offset=None)

    def noisy_model(x_t, t):
        return torch.tanh(x_t) * (1 + t.reshape(-1, 1, 1, 1) / 1000)

    batch = diffusion_loss(noisy_model, x0, SCHEDULE, seeded_generators([1, 2, 3]))
    singles = [
        diffusion_loss(noisy_model, x0[i : i + 1], SCHEDULE, seeded_generators([seed]))
        for i, seed in enumerate([1, 2, 3])
    ]
    torch.testing.assert_close(batch, torch.stack(singles).mean())
    again = diffusion_loss(noisy_model, x0, SCHEDULE, seeded_generators([1, 2, 3]))
    assert torch.equal(batch, again)
    assert float(diffusion_loss(model, x0, SCHEDULE, seeded_generators([1, 2, 3]))) < 1e-20


def test_wrong_model_output_shape():
    x0 = data(2)
    with pytest.raises(ConfigError, match="must match x_t"):
        diffusion_loss(lambda x, t: x[:, :1], x0, SCHEDULE, torch.Generator().manual_seed(0))


def test_lognormal_timesteps_follow_their_log_sigma_distribution_per_sample():
    import math

    from ldmkit.diffusion.loss import lognormal_timesteps
    from ldmkit.diffusion.noise import seeded_generators
    from ldmkit.diffusion.schedule import DiffusionConfig, Schedule

    schedule = Schedule.from_config(DiffusionConfig())
    t = lognormal_timesteps(schedule, 4000, torch.Generator().manual_seed(0), -0.5, 1.2, "cpu")
    log_sigma = schedule.sigmas.log()[t]
    inside = (log_sigma > schedule.sigmas.log()[0] + 0.1) & (log_sigma < schedule.sigmas.log()[-1] - 0.1)
    assert abs(float(log_sigma[inside].mean()) - -0.5) < 0.15  # (the tails clamp to the schedule's ends)
    assert 0 <= int(t.min()) and int(t.max()) <= 999 and len(set(t.tolist())) > 200
    one = lognormal_timesteps(schedule, 3, seeded_generators([5, 6, 7]), -0.5, 1.2, "cpu")
    assert int(one[1]) == int(lognormal_timesteps(schedule, 1, seeded_generators([6]), -0.5, 1.2, "cpu")[0])
    assert math.isfinite(float(log_sigma.std()))

import math

import pytest
import torch

from ldmkit.errors import ConfigError
from ldmkit.sampling.sigmas import SigmaTable, karras_sigmas, sigma_schedule, sigma_to_t, t_to_sigma


def test_integer_timesteps_hit_the_table(ldm_schedule):
    sigmas = ldm_schedule.sigmas
    for t in (0, 1, 500, 999):
        for interpolation in ("log", "linear"):
            assert t_to_sigma(t, ldm_schedule, interpolation) == pytest.approx(float(sigmas[t]), rel=1e-12)
            assert sigma_to_t(float(sigmas[t]), ldm_schedule, interpolation) == pytest.approx(t, abs=1e-9)


@pytest.mark.parametrize("interpolation", ["log", "linear"])
def test_round_trip_of_fractional_timesteps(ldm_schedule, interpolation):
    table = SigmaTable.of(ldm_schedule, interpolation)
    for t in (0.25, 41.625, 500.5, 998.9):
        assert table.t(table.sigma(t)) == pytest.approx(t, abs=1e-9)
    assert table.t(table.sigma(41.4), quantize=True) == 41.0
    log_mid = math.exp((math.log(ldm_schedule.sigmas[10]) + math.log(ldm_schedule.sigmas[11])) / 2)
    assert SigmaTable.of(ldm_schedule, "log").sigma(10.5) == pytest.approx(log_mid, rel=1e-12)


def test_clamped_outside_the_table(ldm_schedule):
    assert sigma_to_t(1e-6, ldm_schedule) == 0.0
    assert sigma_to_t(1e6, ldm_schedule) == 999.0


def test_karras_closed_form():
    sigmas = karras_sigmas(5, 0.1, 10.0, rho=7.0)
    ramp = torch.linspace(0, 1, 5, dtype=torch.float64)
    expected = (10.0 ** (1 / 7) + ramp * (0.1 ** (1 / 7) - 10.0 ** (1 / 7))) ** 7
    torch.testing.assert_close(sigmas[:-1], expected)
    assert sigmas[0] == pytest.approx(10.0) and sigmas[-2] == pytest.approx(0.1) and sigmas[-1] == 0


def test_sigma_schedule(ldm_schedule):
    sigmas = sigma_schedule(ldm_schedule, 10)
    assert sigmas.shape == (11,) and sigmas[-1] == 0 and bool((sigmas[:-1] > sigmas[1:]).all())
    assert float(sigmas[0]) == pytest.approx(float(ldm_schedule.sigmas[-1]))
    assert float(sigmas[-2]) == pytest.approx(float(ldm_schedule.sigmas[0]))
    karras = sigma_schedule(ldm_schedule, 10, karras=True)
    assert float(karras[0]) == pytest.approx(float(sigmas[0])) and float(karras[-2]) == pytest.approx(float(sigmas[-2]))
    with pytest.raises(ConfigError, match="interpolation"):
        sigma_schedule(ldm_schedule, 10, interpolation="cubic")


def test_sigma_schedule_sits_at_the_spaced_timesteps(ldm_schedule):
    """The levels of the timesteps a discrete sampler would visit with the same spacing and offset, then 0."""
    table = ldm_schedule.sigmas
    for (spacing, offset), ts in {("trailing", 0): [999, 749, 499, 249], ("leading", 1): [751, 501, 251, 1],
                                  ("leading", 0): [750, 500, 250, 0]}.items():
        expected = torch.cat([table[ts], torch.zeros(1, dtype=torch.float64)])
        torch.testing.assert_close(sigma_schedule(ldm_schedule, 4, spacing, offset=offset), expected)
    # Karras levels span the first and last spaced levels; the default "linspace" spans the whole schedule
    assert float(sigma_schedule(ldm_schedule, 4, karras=True)[0]) == pytest.approx(float(table[-1]))

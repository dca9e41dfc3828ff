import numpy as np
import pytest

from ldmkit.errors import ConfigError
from ldmkit.sampling.timesteps import discrete_timesteps, spaced_timesteps


def test_compvis_uniform():
    assert discrete_timesteps(1000, 10) == [1, 101, 201, 301, 401, 501, 601, 701, 801, 901]
    ts = discrete_timesteps(1000, 30)  # c = 33: range(0, 1000, 33) has 31 entries
    assert len(ts) == 31 and ts[:3] == [1, 34, 67] and ts[-1] == 991


def test_compvis_quadratic():
    expected = ((np.linspace(0, np.sqrt(1000 * 0.8), 50)) ** 2).astype(int) + 1
    assert discrete_timesteps(1000, 50, "quadratic") == expected.tolist()
    assert discrete_timesteps(1000, 50, "quadratic")[-1] == 801


def test_diffusers_spacings():
    assert discrete_timesteps(1000, 10, "leading", offset=1) == discrete_timesteps(1000, 10)
    assert discrete_timesteps(1000, 30, "leading") == [33 * i for i in range(30)]
    assert discrete_timesteps(1000, 4, "trailing") == [249, 499, 749, 999]
    linspace = spaced_timesteps(1000, 25, "linspace")
    assert float(linspace[0]) == 0 and float(linspace[-1]) == 999 and float(linspace[1]) == pytest.approx(41.625)


def test_bad_requests():
    with pytest.raises(ConfigError, match="between 1 and"):
        discrete_timesteps(1000, 0)
    with pytest.raises(ConfigError, match="unknown"):
        discrete_timesteps(1000, 10, "cubic")
    with pytest.raises(ConfigError, match="outside"):
        discrete_timesteps(1000, 1000, "uniform")  # CompVis' rule would visit t = 1000


@pytest.mark.parametrize("steps", [1, 3, 9, 30, 300, 999, 1000])
def test_leading_with_offset_1_takes_any_step_count(steps):
    """The default walk of the discrete samplers (CompVis' and SD v1's spacing): exactly `steps` timesteps in
    [0, 999]; the offset shrinks only where it would step past 999 (1000 steps: 0 .. 999)."""
    ts = discrete_timesteps(1000, steps, "leading", offset=1)
    assert len(ts) == steps == len(set(ts)) and 0 <= ts[0] and ts[-1] <= 999
    if steps < 1000:
        assert ts[0] == 1


def test_the_default_is_compvis_uniform_where_it_stays_in_range_else_leading_with_offset_1():
    """What DDIM and PLMS walk without a spacing: CompVis' timesteps wherever CompVis can take the count
    (so those results stay), and for the others (3, 9, 300, 999, ...) the same walk cut to `steps`."""
    cut = 0
    for steps in range(1, 1001):
        try:
            compvis = discrete_timesteps(1000, steps, "uniform")
        except ConfigError:
            cut += 1
            assert discrete_timesteps(1000, steps) == discrete_timesteps(1000, steps, "leading", offset=1)
        else:
            assert discrete_timesteps(1000, steps) == compvis
    assert cut == 599  # 3, 9, 27, 36, 37, 101-111, 251-333, 501-1000
    assert discrete_timesteps(1000, 3) == [1, 334, 667] and discrete_timesteps(1000, 1000) == list(range(1000))

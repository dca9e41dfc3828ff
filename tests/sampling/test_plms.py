import pytest
import torch

from ldmkit.diffusion.schedule import DiffusionConfig, Schedule
from ldmkit.sampling import sample
from ldmkit.sampling.plms import plms_eps


def test_model_calls_follow_compvis():
    seen = []

    def model(x, t):
        seen.append(int(t[0]))
        return 0.1 * x

    sample("plms", model, torch.ones(1, 2), Schedule.from_config(DiffusionConfig()), 10)
    # pseudo improved Euler: a second call at the next timestep on the first step only
    assert seen == [901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1]


def test_multistep_coefficients_sum_to_one():
    # A constant eps history must give back the same eps at every order.
    e = torch.full((2,), 0.7)
    for history in ([e], [e, e], [e, e, e]):
        torch.testing.assert_close(plms_eps(e, history), e)
    e1, e0 = torch.tensor([1.0]), torch.tensor([0.0])
    assert float(plms_eps(e1, [e0])) == 1.5
    assert float(plms_eps(e1, [e0, e0, e0])) == pytest.approx(55 / 24)

import pytest
import torch

from ldmkit.diffusion.parameterization import expand_like, target, to_eps, to_x0
from ldmkit.errors import ConfigError


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_targets_convert_back(prediction):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 3, 2, generator=g, dtype=torch.float64)
    abar = expand_like(torch.tensor([0.999, 0.5, 0.1, 0.001], dtype=torch.float64), x0)  # (4, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    out = target(prediction, x0, eps, abar)
    torch.testing.assert_close(to_eps(out, x_t, abar, prediction), eps)
    torch.testing.assert_close(to_x0(out, x_t, abar, prediction), x0)


def test_v_definition_and_errors():
    x0, eps, abar = torch.tensor([[2.0]]), torch.tensor([[1.0]]), torch.tensor([[0.36]])
    assert float(target("v", x0, eps, abar)) == pytest.approx(0.6 * 1.0 - 0.8 * 2.0)
    with pytest.raises(ConfigError):
        target("score", x0, eps, abar)
    assert expand_like(torch.ones(3, dtype=torch.float64), torch.zeros(3, 2, 2)).shape == (3, 1, 1)

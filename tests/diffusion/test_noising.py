import math

import pytest
import torch

from ldmkit.diffusion.noising import q_sample
from ldmkit.diffusion.schedule import DiffusionConfig, Schedule
from ldmkit.errors import LdmkitError

SCHEDULE = Schedule.from_config(DiffusionConfig())


def test_closed_form():
    x0 = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 499, 999])
    x_t = q_sample(x0, t, noise, SCHEDULE)
    for i, step in enumerate(t.tolist()):
        a = float(SCHEDULE.alphas_cumprod[step])
        torch.testing.assert_close(x_t[i], math.sqrt(a) * x0[i] + math.sqrt(1 - a) * noise[i])
    assert x_t.dtype == torch.float32


def test_bad_timesteps_and_shapes():
    x0 = torch.zeros(2, 3)
    with pytest.raises(LdmkitError, match="integers"):
        q_sample(x0, torch.tensor([1.0, 2.0]), x0, SCHEDULE)
    with pytest.raises(LdmkitError, match=r"\[0, 1000\)"):
        q_sample(x0, torch.tensor([0, 1000]), x0, SCHEDULE)
    with pytest.raises(LdmkitError, match="shape \\(2,\\)"):
        q_sample(x0, torch.tensor([0]), x0, SCHEDULE)
    with pytest.raises(LdmkitError, match="noise shape"):
        q_sample(x0, torch.tensor([0, 1]), torch.zeros(2, 4), SCHEDULE)

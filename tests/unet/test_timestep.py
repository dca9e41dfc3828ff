import math

import torch

from ldmkit.unet.timestep import timestep_embedding


def test_matches_closed_form_cos_first_divisor_half():
    t = torch.tensor([0, 1, 17, 999])
    emb = timestep_embedding(t, 32)
    assert emb.shape == (4, 32) and emb.dtype == torch.float32
    for row, step in zip(emb.double(), t.tolist()):
        for i in range(16):
            arg = step * math.exp(-math.log(10000) * i / 16)
            assert abs(row[i].item() - math.cos(arg)) < 2e-4
            assert abs(row[16 + i].item() - math.sin(arg)) < 2e-4


def test_fractional_timesteps_and_odd_width():
    emb = timestep_embedding(torch.tensor([2.5]), 7)
    assert emb.shape == (1, 7)
    assert abs(emb[0, 0].item() - math.cos(2.5)) < 1e-6 and abs(emb[0, 3].item() - math.sin(2.5)) < 1e-6
    assert emb[0, 6].item() == 0.0

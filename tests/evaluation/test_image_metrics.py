import math

import torch

from ldmkit.evaluation.image_metrics import psnr, ssim


def test_psnr_closed_form():
    x = torch.zeros(2, 3, 16, 16)
    y = x + 0.2  # 0.1 on the [0, 1] scale -> MSE 0.01 -> 20 dB
    assert torch.allclose(psnr(x, y), torch.full((2,), 20.0, dtype=torch.float64))


def test_ssim_identity_and_constant_images():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))
    # constant images: only the luminance term remains, (2ab + c1) / (a^2 + b^2 + c1)
    a, b = 0.25, 0.75
    s = ssim(torch.full((1, 1, 16, 16), 2 * a - 1), torch.full((1, 1, 16, 16), 2 * b - 1))
    c1 = 0.01**2
    assert math.isclose(s.item(), (2 * a * b + c1) / (a * a + b * b + c1), rel_tol=1e-9)


def test_ssim_falls_with_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    light = x + 0.05 * torch.randn(x.shape, generator=g)
    heavy = x + 0.3 * torch.randn(x.shape, generator=g)
    assert 1 > ssim(x, light).item() > ssim(x, heavy).item()

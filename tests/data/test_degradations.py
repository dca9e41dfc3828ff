import pytest
import torch

from ldmkit.data.degradations import bicubic_downsample, bsr_degrade, degrade, gaussian_kernel, jpeg
from ldmkit.errors import ShapeError


def images(b=3, h=32, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, 3, h // 8, w // 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear")  # smooth, like photos


def gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("kind", ["bicubic", "bsr"])
@pytest.mark.parametrize("factor,h,w", [(4, 32, 48), (2, 16, 16), (4, 64, 32)])
def test_lr_size_range_and_8_bit_levels(kind, factor, h, w):
    lr = degrade(images(3, h, w), factor, kind, gens([0, 1, 2]))
    assert lr.shape == (3, 3, h // factor, w // factor) and lr.dtype == torch.float32
    assert lr.min() >= -1 and lr.max() <= 1
    levels = (lr + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-3)  # what an LR PNG holds


def test_bsr_is_a_function_of_the_seed_alone():
    x = images(3)
    a = degrade(x, 4, "bsr", gens([5, 6, 7]))
    b = degrade(x, 4, "bsr", gens([5, 6, 7]))
    c = torch.stack([bsr_degrade(x[1], 4, torch.Generator().manual_seed(6))])  # alone, not in a batch
    assert torch.equal(a, b) and torch.equal(a[1:2], c)
    d = degrade(x, 4, "bsr", gens([8, 9, 10]))
    assert not torch.equal(a, d)
    per_image = [(a[i] - d[i]).abs().mean() for i in range(3)]
    assert all(v > 1e-3 for v in per_image)


def test_bicubic_is_deterministic_and_keeps_flat_colour():
    x = images(2)
    assert torch.equal(degrade(x, 4), degrade(x, 4))
    flat = torch.full((1, 3, 16, 16), 0.2)
    lr = bicubic_downsample(flat, 4)
    assert torch.allclose(lr, torch.full_like(lr, round(1.2 * 127.5) / 127.5 - 1), atol=1e-6)


def test_bsr_degrades_more_than_bicubic_on_average():
    x = images(8, 64, 64)
    up = lambda lr: torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic")  # noqa: E731
    err_bicubic = (up(degrade(x, 4)) - x).pow(2).mean()
    err_bsr = (up(degrade(x, 4, "bsr", gens(range(8)))) - x).pow(2).mean()
    assert err_bsr > err_bicubic


def test_kernel_is_normalised_and_rotates():
    k = gaussian_kernel(3.0, 0.5, 0.0, max_radius=20)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert (gaussian_kernel(3.0, 0.5, torch.pi / 2, max_radius=20) - k.T).abs().max() < 1e-6


def test_jpeg_round_trip_keeps_size_and_rough_content():
    x = images(1, 32, 32)[0]
    y = jpeg(x, 90)
    assert y.shape == x.shape and (y - x).abs().mean() < 0.05


def test_sizes_not_divisible_by_the_factor_and_missing_generators_fail_clearly():
    with pytest.raises(ShapeError, match="multiples of 4"):
        degrade(images(1, 30, 32), 4)
    with pytest.raises(Exception, match="one torch.Generator per image"):
        degrade(images(2), 4, "bsr", gens([0]))

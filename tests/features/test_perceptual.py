import pytest
import torch
import torch.nn.functional as F

from ldmkit.config import from_dict
from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.features.perceptual import PerceptualConfig, PerceptualDistance, build_perceptual, unit_normalize


@pytest.fixture(scope="module")
def dist():
    return build_perceptual(PerceptualConfig())


@pytest.fixture(scope="module")
def images(emoji):
    return emoji("🍌🍕⚽☂🍎😀", 64, 52)  # (6, 3, 64, 64)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    taps = torch.arange(-3, 4, dtype=x.dtype)
    k = torch.exp(-taps**2 / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 7)  # separable Gaussian
    x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(F.pad(x, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1).repeat(3, 1, 1, 1), groups=3)


def noisy(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    return (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)


def test_zero_for_identical_positive_and_symmetric(dist, images):
    other = images.roll(1, dims=0)
    with torch.no_grad():
        same = dist(images, images.clone())
        d_xy, d_yx = dist(images, other), dist(other, images)
    assert same.shape == (6,)
    assert same.abs().max() < 1e-6
    assert (d_xy > 0.1).all()
    assert torch.allclose(d_xy, d_yx, atol=1e-6)


def test_heavier_degradation_is_farther(dist, images):
    with torch.no_grad():
        light_blur, heavy_blur = dist(images, blur(images, 0.7)), dist(images, blur(images, 1.5))
        light_noise, heavy_noise = dist(images, noisy(images, 0.05)), dist(images, noisy(images, 0.2))
    assert (heavy_blur > light_blur).all(), (light_blur, heavy_blur)
    assert (heavy_noise > light_noise).all(), (light_noise, heavy_noise)


def test_gradients_reach_the_input_only(dist, images):
    x = blur(images[:2], 1.0).requires_grad_(True)
    dist(x, images[:2]).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in dist.parameters())


def test_a_fixed_reference_image_gives_the_joint_passes_value_and_gradient(dist, images):
    """Only the reconstruction needs gradients: the reference's pass builds no graph, the result is the same."""
    y = noisy(images[:3], 0.1)
    calls = []
    hook = dist.backbone.stem.register_forward_hook(lambda m, i, o: calls.append((len(i[0]), o.requires_grad)))
    try:
        y_alone, y_joint, x_joint = y.clone().requires_grad_(), y.clone().requires_grad_(), images[:3].clone()
        alone = dist(images[:3], y_alone)
        assert calls == [(3, False), (3, True)]  # two passes of B images, one without a graph
        joint = dist(x_joint.requires_grad_(), y_joint)
        assert calls[2:] == [(6, True)]  # both need gradients: one pass of 2B
    finally:
        hook.remove()
    alone.sum().backward()
    joint.sum().backward()
    torch.testing.assert_close(alone, joint, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(y_alone.grad, y_joint.grad, atol=1e-7, rtol=1e-4)


def test_batch_independent(dist, images):
    y = noisy(images, 0.1)
    with torch.no_grad():
        whole = dist(images, y)
        alone = torch.cat([dist(images[i : i + 1], y[i : i + 1]) for i in range(len(images))])
    assert torch.allclose(whole, alone, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("size", [64, 256])
def test_works_at_several_resolutions(dist, emoji, size):
    x = emoji("🍌", size, int(size * 0.8))
    with torch.no_grad():
        d = dist(x, blur(x, 1.0))
    assert d.shape == (1,) and torch.isfinite(d).all() and (d > 0).all()


def test_train_mode_keeps_backbone_in_eval(dist):
    dist.train()
    assert not dist.backbone.training
    dist.eval()


def test_config_validation_and_yaml_round_trip():
    with pytest.raises(ConfigError, match="vgg16-397923af.pth"):
        PerceptualConfig(network="lpips_vgg")
    with pytest.raises(ConfigError, match="lpips_weights"):
        PerceptualConfig(lpips_weights="vgg.pth")
    cfg = from_dict(PerceptualConfig, {"network": "lpips_vgg", "weights": "a.pth", "lpips_weights": "b.pth"})
    assert cfg == PerceptualConfig("lpips_vgg", "a.pth", "b.pth")


def test_lpips_vgg_path_loads_and_runs(vgg16_file, lpips_lin_file):
    lpips = build_perceptual(PerceptualConfig("lpips_vgg", str(vgg16_file), str(lpips_lin_file)))
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = noisy(x, 0.3)
    with torch.no_grad():
        assert lpips(x, x.clone()).abs().max() < 1e-6
        d = lpips(x, y)
    assert d.shape == (2,) and (d > 0).all()
    # Linear in the channel weights, and summed over taps: doubling the weights doubles the distance.
    doubled = PerceptualDistance(lpips.backbone, [2 * getattr(lpips, f"weight{i}").flatten() for i in range(5)], "sum")
    with torch.no_grad():
        assert torch.allclose(doubled(x, y), 2 * d, rtol=1e-5)


def test_unit_normalize_has_finite_gradient_at_dead_features():
    """An all-zero feature vector (every ReLU dead) must give a finite gradient, not sqrt(0)'s NaN."""
    f = torch.zeros(1, 4, 2, 2)
    f[0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    f.requires_grad_(True)
    u = unit_normalize(f)
    assert torch.allclose(u[0, :, 0, 0].norm(), torch.tensor(1.0)) and (u[0, :, 1, 1] == 0).all()
    (u - 0.5).square().sum().backward()
    assert torch.isfinite(f.grad).all()


def test_wrong_lpips_file_is_rejected(vgg16_file, tmp_path):
    alex = {f"lin{k}.model.1.weight": torch.ones(1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))}
    path = tmp_path / "alex.pth"
    torch.save(alex, path)
    with pytest.raises(CheckpointError, match=r"'lin1\.model\.1\.weight' has shape \(1, 192, 1, 1\)"):
        build_perceptual(PerceptualConfig("lpips_vgg", str(vgg16_file), str(path)))

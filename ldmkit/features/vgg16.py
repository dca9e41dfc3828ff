"""The VGG16 convolutional trunk (Simonyan & Zisserman, 2015) that LPIPS reads, loaded from a local file.

Weights: torchvision's ImageNet file ``vgg16-397923af.pth`` (a state dict whose ``features.*`` keys
are used and whose ``classifier.*`` keys are ignored), or a ``.safetensors`` with the same keys.
Nothing is downloaded; users who have torchvision find the file in ``~/.cache/torch/hub/checkpoints/``
after ``torchvision.models.vgg16(weights="IMAGENET1K_V1")``, or get it from the URL in torchvision's
documentation, and pass its path.

Layout (torchvision's ``features`` indices; every conv is 3x3 with padding 1, followed by ReLU):

    0 conv 3->64, 2 conv 64->64 -> relu1_2 (index 3), 4 max-pool
    5 conv 64->128, 7 conv 128->128 -> relu2_2 (8), 9 max-pool
    10, 12, 14 conv ->256 -> relu3_3 (15), 16 max-pool
    17, 19, 21 conv ->512 -> relu4_3 (22), 23 max-pool
    24, 26, 28 conv 512->512 -> relu5_3 (29)

Input normalisation is LPIPS's: images in [-1, 1] are shifted and scaled per channel by the
ImageNet mean and std expressed in that range.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ldmkit.errors import ConfigError
from ldmkit.features.weight_files import load_into, read_state_dict

# Output channels per conv, "M" for a 2x2 max-pool; indices follow torchvision's `features`.
_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
LPIPS_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
TAP_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS's ScalingLayer: ImageNet mean and std of each RGB channel, mapped to [-1, 1] images.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class VGG16Features(nn.Module):
    """VGG16 conv trunk for images in [-1, 1], (B, 3, H, W); `features` returns the LPIPS taps."""

    def __init__(self):
        super().__init__()
        layers, c_in = [], 3
        for item in _LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, item, 3, padding=1), nn.ReLU()]
                c_in = item
        self.trunk = nn.Sequential(*layers)  # 30 modules, indices as torchvision's `features`
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.tap_channels = TAP_CHANNELS

    def features(self, x: torch.Tensor, layers: Sequence[int] = LPIPS_TAPS) -> list[torch.Tensor]:
        """Activations after the given `features` indices (default: the five LPIPS ReLUs), in that order."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ConfigError(f"VGG16Features expects images of shape (B, 3, H, W) in [-1, 1], got {tuple(x.shape)}")
        wanted = set(layers)
        if not wanted or not wanted <= set(range(len(self.trunk))):
            raise ConfigError(f"VGG16 feature layers must be indices in 0..{len(self.trunk) - 1}, got {tuple(layers)}")
        out = {}
        h = (x - self.shift) / self.scale  # (B, 3, H, W), ImageNet-normalised
        for i, layer in enumerate(self.trunk[: max(wanted) + 1]):
            h = layer(h)  # relu_k_* at full, 1/2, 1/4, 1/8, 1/16 resolution
            if i in wanted:
                out[i] = h
        return [out[i] for i in layers]


def load_vgg16_features(path: str) -> VGG16Features:
    """A frozen, eval-mode VGG16 trunk from torchvision's `vgg16-397923af.pth` or a safetensors with its keys."""
    fix = ("pass torchvision's ImageNet VGG16 state dict (vgg16-397923af.pth) or a .safetensors with the same "
           "'features.N.weight' / 'features.N.bias' keys")
    state = read_state_dict(path, fix)
    model = VGG16Features()
    load_into(model, state, path, fix, file_key=lambda k: k.replace("trunk.", "features.", 1),
              ignore_prefixes=("classifier.",))
    return model.eval().requires_grad_(False)

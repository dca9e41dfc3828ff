"""Label maps concatenated to z_t: the paper's semantic synthesis (Sec. 4.3.2).

The paper concatenates downsampled semantic maps to the latent of an f = 4 model. Here a label
map (H, W) of class ids becomes one-hot maps (num_classes, H, W) that are averaged over each
f x f block, so each latent pixel sees the share of every class under it:

    concat = avg_pool_f(one_hot(label_map))        (B, num_classes, H/f, W/f), each pixel sums to 1

No parameters: the UNet's first convolution is the learned embedding. Being convolutional, the
model takes a map of any size that is a multiple of f x the UNet's multiple, and the map's size
sets the sample's: a 128 px map on a model trained at 64 px gives a 128 px image.
The unconditional ("null") map is all zeros (no class at all), broadcast over any size.

The condition is a (B, H, W) tensor of integer ids (`ldmkit.pipeline.conditions` reads PNGs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ldmkit.conditioning.base import Conditioner, Conditioning, Encode
from ldmkit.conditioning.sections import SemanticConfig
from ldmkit.errors import DataError, ShapeError


def downsample_label_map(label_map: torch.Tensor, num_classes: int, factor: int) -> torch.Tensor:
    """(B, H, W) ids -> (B, num_classes, H/f, W/f) class shares per f x f block."""
    _, h, w = label_map.shape
    if h % factor or w % factor:
        raise ShapeError(f"a label map of {h}x{w} px cannot be pooled by the first stage's f = {factor}; "
                         f"give a map whose sides are multiples of {factor} (the size of the image to sample)")
    one_hot = F.one_hot(label_map, num_classes).permute(0, 3, 1, 2).float()  # (B, C, H, W)
    return F.avg_pool2d(one_hot, factor) if factor > 1 else one_hot  # (B, C, H/f, W/f)


class SemanticMap(Conditioner):
    """`{"concat": (B, num_classes, H/f, W/f)}` from label maps (B, H, W)."""

    def __init__(self, cfg: SemanticConfig):
        super().__init__()
        self.num_classes, self.factor = cfg.num_classes, cfg.factor
        self.concat_channels = cfg.num_classes

    def forward(self, maps: torch.Tensor, encode: Encode | None = None) -> Conditioning:
        if not isinstance(maps, torch.Tensor) or maps.dim() != 3:
            raise ShapeError(f"label maps must be a (B, H, W) tensor of class ids, got "
                             f"{tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__}")
        if maps.is_floating_point() or maps.is_complex() or maps.dtype == torch.bool:
            raise DataError(f"label maps hold integer class ids, got {maps.dtype}")
        maps = maps.long()
        if bool(((maps < 0) | (maps >= self.num_classes)).any()):
            raise DataError(f"label-map ids must be in [0, {self.num_classes}), got "
                            f"{sorted(set(maps.unique().tolist()))[:12]}")
        return {"concat": downsample_label_map(maps, self.num_classes, self.factor)}

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        return {"concat": torch.zeros(1, self.num_classes, 1, 1, device=device)}  # broadcast to (B, C, h, w)

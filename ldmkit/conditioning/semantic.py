"""Label maps concatenated to z_t: the paper's semantic synthesis (Sec. 4.3.2).

The paper concatenates downsampled semantic maps to the latent of an f = 4 model. Here a label
map (H, W) of class ids becomes one-hot maps (num_classes, H, W) that are averaged over each
f x f block, so each latent pixel sees the share of every class under it:

    concat = avg_pool_f(one_hot(label_map))        (B, num_classes, H/f, W/f), each pixel sums to 1

No parameters: the UNet's first convolution is the learned embedding. Being convolutional, the
model takes a map of any size that is a multiple of f x the UNet's multiple, and the map's size
sets the sample's: a 128 px map on a model trained at 64 px gives a 128 px image.
The unconditional ("null") map is all zeros (no class at all), broadcast over any size.

Raw conditions (`forward`): a (B, H, W) or (H, W) tensor or array of ids, a single-channel PIL image
(L, P or I: pixel values are ids), or a list of (H, W) ones, one per sample (what
`pipe(condition=...)` passes).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from ldmkit.conditioning.base import Conditioner, Conditioning, Encode
from ldmkit.conditioning.sections import SemanticConfig
from ldmkit.data.label_maps import label_map_ids
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

    batch_keys = ("label_map",)

    def __init__(self, cfg: SemanticConfig):
        super().__init__()
        self.num_classes, self.factor = cfg.num_classes, cfg.factor
        self.concat_channels = cfg.num_classes

    def forward(self, raw, batch_size: int, device: torch.device, encode: Encode | None = None) -> Conditioning:
        maps = self.label_maps(raw, batch_size).to(device)  # (B, H, W)
        return {"concat": downsample_label_map(maps, self.num_classes, self.factor)}

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        return {"concat": torch.zeros(1, self.num_classes, 1, 1, device=device)}  # broadcast to (B, C, h, w)

    def image_size(self, raw: Any) -> tuple[int, int] | None:
        """(H, W) of the image a raw label map asks for: its own size."""
        if raw is None:
            return None
        return tuple(self.label_maps(raw[:1] if isinstance(raw, (list, tuple)) else raw, 1).shape[-2:])

    def label_maps(self, raw, batch_size: int) -> torch.Tensor:
        """Any raw label-map condition -> (B, H, W) int64, checked."""
        if raw is None:
            raise DataError("a semantic-synthesis model needs a label map: pass condition=(H, W) class ids "
                            "(`ldmkit sample --label-map map.png`)")
        if isinstance(raw, (list, tuple)):
            if any(m is None for m in raw):
                raise DataError("every sample of a semantic-synthesis model needs a label map; one is None")
            maps = torch.stack([_ids(m) for m in raw])
        else:
            maps = _ids(raw)
            if maps.dim() == 2:
                maps = maps.expand(batch_size, *maps.shape)
        if maps.dim() == 4 and maps.shape[1] == 1:
            maps = maps[:, 0]  # (B, 1, H, W) -> (B, H, W)
        if maps.dim() != 3 or maps.shape[0] != batch_size:
            raise ShapeError(f"label maps must be (B, H, W) = ({batch_size}, H, W) class ids, or one (H, W) map, "
                             f"got shape {tuple(maps.shape)}")
        if maps.is_floating_point() or maps.is_complex() or maps.dtype == torch.bool:
            raise DataError(f"label maps hold integer class ids, got {maps.dtype}")
        maps = maps.long()
        if bool(((maps < 0) | (maps >= self.num_classes)).any()):
            raise DataError(f"label-map ids must be in [0, {self.num_classes}), got "
                            f"{sorted(set(maps.unique().tolist()))[:12]}")
        return maps


def _ids(item: Any) -> torch.Tensor:
    return label_map_ids(item) if isinstance(item, Image.Image) else torch.as_tensor(item)


def build(cfg) -> SemanticMap:
    """The label-map conditioner of a ConditioningConfig of kind 'semantic'."""
    return SemanticMap(cfg.semantic)

"""Image-like raw conditions (a low-res image, an image and its mask) as batched tensors.

Users give a condition as a tensor (C, H, W) or (B, C, H, W), a PIL image, or a list with one of
those per sample (what `Pipeline` passes); images are in [-1, 1], masks in [0, 1] with 1 = hole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image

from ldmkit.data.images import flatten_to_rgb, to_tensor
from ldmkit.errors import DataError, ShapeError


def _one(item: Any, what: str, channels: int) -> torch.Tensor:
    if isinstance(item, Image.Image):
        if channels == 1:  # a mask: white = 1
            return torch.from_numpy(_gray(item)).float().div(255)[None, None]  # (1, 1, H, W)
        return to_tensor(flatten_to_rgb(item))[None]  # (1, 3, H, W)
    if not isinstance(item, torch.Tensor):
        raise DataError(f"the {what} must be a tensor or a PIL image (or a list of them), got {type(item).__name__}")
    x = item[None] if item.ndim == 3 else item
    if channels == 1 and x.ndim == 2:
        x = x[None, None]
    if x.ndim != 4 or x.shape[1] != channels:
        raise ShapeError(f"the {what} must be ({channels}, H, W) or (B, {channels}, H, W), got {tuple(item.shape)}")
    return x


def _gray(img: Image.Image) -> np.ndarray:
    """(H, W) uint8 luminance; transparency counts as white, like images elsewhere in ldmkit."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = flatten_to_rgb(img)
    return np.array(img.convert("L"))  # a writable copy


def image_batch(raw: Any, batch_size: int, what: str, channels: int = 3) -> torch.Tensor:
    """(batch_size, channels, H, W) float32 from one image/tensor (repeated) or one per sample."""
    items = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    parts = [_one(item, what, channels) for item in items]
    sizes = {tuple(p.shape[-2:]) for p in parts}
    if len(sizes) != 1:
        raise ShapeError(f"all {what}s of a batch must have one size, got {sorted(sizes)}")
    x = torch.cat([p.float() for p in parts])  # (n, C, H, W)
    if x.shape[0] == 1 and batch_size != 1:
        x = x.expand(batch_size, -1, -1, -1)
    if x.shape[0] != batch_size:
        raise ShapeError(f"got {x.shape[0]} {what}s for a batch of {batch_size}; give one, or one per sample")
    return x


def image_and_mask(raw: Any, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(image (B, 3, H, W), mask (B, 1, H, W) in {0, 1}) from {"image": ..., "mask": ...} or a list of such.

    The mask is binarised at 0.5 (1 = hole); image and mask must have the same size.
    """
    entries = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    if not all(isinstance(e, Mapping) and {"image", "mask"} <= set(e) for e in entries):
        raise DataError('the inpainting condition is {"image": image, "mask": mask} (mask: 1 or white = fill), '
                        "or a list with one such dict per sample")
    image = image_batch([e["image"] for e in entries] if len(entries) > 1 else entries[0]["image"], batch_size,
                        "inpainting image")
    mask = image_batch([e["mask"] for e in entries] if len(entries) > 1 else entries[0]["mask"], batch_size,
                       "inpainting mask", channels=1)
    if image.shape[-2:] != mask.shape[-2:]:
        raise ShapeError(f"the inpainting mask is {tuple(mask.shape[-2:])} but the image {tuple(image.shape[-2:])}; "
                         "give a mask of the image's size")
    return image, (mask >= 0.5).to(image.dtype)


def first_size(raw: Any) -> tuple[int, int] | None:
    """(H, W) of the first image of a raw condition, if it has one."""
    item = raw[0] if isinstance(raw, (list, tuple)) and raw else raw
    if isinstance(item, Mapping):
        item = item.get("image")
    if isinstance(item, Image.Image):
        return item.height, item.width
    if isinstance(item, torch.Tensor) and item.ndim >= 2:
        return int(item.shape[-2]), int(item.shape[-1])
    return None

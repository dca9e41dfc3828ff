"""Bounding boxes of layout samples: normalised corners, padding to a fixed count, crops and flips.

A layout sample holds
    "boxes":      (max_boxes, 4) float32, normalised corners x0, y0, x1, y1 in [0, 1]
    "box_labels": (max_boxes,) int64 class indices, PAD_LABEL where a row is padding
so that batches of layouts with different box counts collate to fixed sizes. Real boxes come
first, in drawing order (later boxes lie on top).
"""

from __future__ import annotations

import torch

from ldmkit.conditioning.layout import PAD_LABEL  # box_labels value of a padding row (its box is all zeros)


def pad_boxes(boxes: torch.Tensor, labels: torch.Tensor, max_boxes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 4), (n,) with n <= max_boxes -> (max_boxes, 4) float32, (max_boxes,) int64 padded."""
    n = boxes.shape[0]
    if n > max_boxes:
        raise ValueError(f"{n} boxes do not fit max_boxes={max_boxes}")
    out_boxes = torch.zeros(max_boxes, 4, dtype=torch.float32)
    out_labels = torch.full((max_boxes,), PAD_LABEL, dtype=torch.int64)
    out_boxes[:n], out_labels[:n] = boxes.float(), labels.long()
    return out_boxes, out_labels


def keep_largest(boxes: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest boxes by area (n, 4) -> (min(n, k), 4), their order among themselves kept."""
    if boxes.shape[0] <= k:
        return boxes, labels
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (n,)
    keep = torch.sort(torch.argsort(area, descending=True, stable=True)[:k]).values
    return boxes[keep], labels[keep]


def flip_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Mirror normalised boxes (..., 4) left-right, as `image.flip(-1)` mirrors the image."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([1 - x1, y0, 1 - x0, y1], dim=-1)


def crop_boxes(boxes: torch.Tensor, scale_x: float, scale_y: float, left: int, top: int, size: int,
               min_side: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel boxes (n, 4) through a resize by (scale_x, scale_y) and a size x size crop at (left, top).

    Returns the normalised boxes (m, 4) clipped to the crop, and which of the n boxes they are
    (m,): a box whose visible part is narrower or lower than `min_side` pixels is dropped.
    """
    scale = torch.tensor([scale_x, scale_y, scale_x, scale_y], dtype=torch.float32)
    shift = torch.tensor([left, top, left, top], dtype=torch.float32)
    moved = (boxes.float() * scale - shift).clamp(0, size)  # (n, 4) pixels of the crop
    visible = ((moved[:, 2] - moved[:, 0]) >= min_side) & ((moved[:, 3] - moved[:, 1]) >= min_side)
    kept = torch.nonzero(visible).flatten()
    return moved[kept] / size, kept

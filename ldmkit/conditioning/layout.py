"""Layouts as context tokens: the paper's layout-to-image encoder (Sec. 4.3.1).

A layout is up to `max_boxes` boxes, each a class and normalised corners x0, y0, x1, y1 in [0, 1].
Each box becomes 5 tokens of one vocabulary (CompVis tokenises boxes the same way, as a class
token followed by quantised coordinate tokens):

    0                                  padding (every token of an absent box)
    1 .. num_classes                   the class (label c -> c + 1)
    num_classes + 1 + k                a coordinate in bin k of `coord_bins` (k = floor(v * bins))

The (B, max_boxes * 5) ids run through a transformer with a learned position per token (the
text transformer of CompVis' BERTEmbedder: the box slot and the coordinate's role are both in the
position), trained jointly with the UNet; every output token is a context token for its
cross-attention. Padding boxes are not masked but given the pad token, so the unconditional
("null") layout is simply the all-padding one and encodes like any other.

The condition is {"boxes": (B, M, 4), "labels": (B, M)} with M <= max_boxes and PAD_LABEL in
the rows that are padding.
"""

from __future__ import annotations

import torch

from ldmkit.conditioning.base import Conditioner, Conditioning, Encode
from ldmkit.conditioning.sections import LayoutConfig
from ldmkit.conditioning.xtransformer import XTransformerEncoder
from ldmkit.errors import DataError, ShapeError

TOKENS_PER_BOX = 5  # class, x0, y0, x1, y1
PAD_LABEL = -1  # the label of a padding row (its box is ignored)
PAD_TOKEN = 0


def tokenize(boxes: torch.Tensor, labels: torch.Tensor, num_classes: int, coord_bins: int) -> torch.Tensor:
    """boxes (B, M, 4) in [0, 1], labels (B, M) (PAD_LABEL: padding) -> token ids (B, M * 5) int64."""
    pad = labels == PAD_LABEL  # (B, M)
    bins = (boxes.clamp(0, 1) * coord_bins).floor().long().clamp(max=coord_bins - 1)  # (B, M, 4)
    tokens = torch.cat([(labels + 1)[..., None], bins + num_classes + 1], dim=-1)  # (B, M, 5)
    return tokens.masked_fill(pad[..., None], PAD_TOKEN).flatten(1)  # (B, M * 5)


def detokenize(tokens: torch.Tensor, num_classes: int, coord_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, M * 5) -> boxes (B, M, 4) at the bin centres (zeros for padding), labels (B, M)."""
    per_box = tokens.reshape(tokens.shape[0], -1, TOKENS_PER_BOX)  # (B, M, 5)
    pad = per_box[..., 0] == PAD_TOKEN
    labels = (per_box[..., 0] - 1).masked_fill(pad, PAD_LABEL)
    boxes = ((per_box[..., 1:] - num_classes - 1).float() + 0.5) / coord_bins  # (B, M, 4)
    return boxes.masked_fill(pad[..., None], 0.0), labels


class LayoutEncoder(Conditioner):
    """`{"context": (B, max_boxes * 5, embed_dim)}` from boxes with class labels."""

    def __init__(self, cfg: LayoutConfig):
        super().__init__()
        self.num_classes, self.coord_bins, self.max_boxes = cfg.num_classes, cfg.coord_bins, cfg.max_boxes
        self.transformer = XTransformerEncoder(1 + cfg.num_classes + cfg.coord_bins, cfg.embed_dim, cfg.layers,
                                               cfg.max_boxes * TOKENS_PER_BOX)

    def forward(self, layout: dict[str, torch.Tensor], encode: Encode | None = None) -> Conditioning:
        boxes, labels = self.checked(layout)
        tokens = tokenize(boxes, labels, self.num_classes, self.coord_bins)  # (B, max_boxes * 5)
        return {"context": self.transformer(tokens.to(self.transformer.token_emb.weight.device))}  # (B, N, D)

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        empty = {"boxes": torch.zeros(1, 0, 4), "labels": torch.zeros(1, 0, dtype=torch.int64)}
        return {k: v.to(device) for k, v in self(empty).items()}  # (1, N, D), broadcast over the batch

    def checked(self, layout: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """boxes (B, max_boxes, 4) float32 and labels (B, max_boxes) int64 on the CPU, padded and range-checked."""
        if not isinstance(layout, dict) or not {"boxes", "labels"} <= set(layout):
            raise DataError('a layout condition is {"boxes": (B, M, 4), "labels": (B, M)} tensors, '
                            f"got {type(layout).__name__}")
        boxes, labels = layout["boxes"].detach().float().cpu(), layout["labels"].detach().cpu()
        if boxes.dim() != 3 or boxes.shape[2] != 4 or labels.shape != boxes.shape[:2]:
            raise ShapeError(f"a layout needs boxes (B, M, 4) and labels (B, M), got {tuple(boxes.shape)} and "
                             f"{tuple(labels.shape)}")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise DataError(f"box labels must be integer class indices, got {labels.dtype}")
        labels = labels.long()
        real = labels != PAD_LABEL
        count = int(real.sum(1).max()) if labels.numel() else 0
        if count > self.max_boxes:
            raise ShapeError(f"a layout has {count} boxes but this model reads at most max_boxes={self.max_boxes}; "
                             "drop the smallest ones")
        if bool(((labels[real] < 0) | (labels[real] >= self.num_classes)).any()):
            raise DataError(f"box labels must be in [0, {self.num_classes}) (or {PAD_LABEL} for padding), "
                            f"got {sorted(set(labels[real].tolist()))}")
        kept = boxes[real]
        x0, y0, x1, y1 = kept.unbind(-1)
        eps = 1e-4
        if not torch.isfinite(kept).all() or bool((kept < -eps).any() or (kept > 1 + eps).any()) \
                or bool((x1 < x0).any() or (y1 < y0).any()):
            raise DataError(f"boxes must be normalised corners 0 <= x0 <= x1 <= 1, 0 <= y0 <= y1 <= 1, got "
                            f"{kept.tolist()}")
        order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)  # real boxes first, in their order
        boxes, labels = boxes.gather(1, order[..., None].expand_as(boxes)), labels.gather(1, order)
        pad = self.max_boxes - boxes.shape[1]
        if pad < 0:  # more rows than max_boxes, the extra ones padding
            return boxes[:, :self.max_boxes], labels[:, :self.max_boxes]
        b = boxes.shape[0]
        return (torch.cat([boxes, torch.zeros(b, pad, 4)], 1),  # (B, max_boxes, 4)
                torch.cat([labels, torch.full((b, pad), PAD_LABEL)], 1))  # (B, max_boxes)

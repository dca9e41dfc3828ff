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

Raw conditions (`forward`):
    None                                      the null layout, for every sample
    {"boxes": (B, M, 4), "box_labels": (B, M)}  a batch from the data (PAD_LABEL rows are padding)
    {"boxes": (n, 4), "labels": (n,)}          one layout for every sample (lists work too)
    [layout or None, ...]                      one per sample (what `pipe(condition=...)` passes)
"""

from __future__ import annotations

import torch

from ldmkit.conditioning.base import Conditioner, Conditioning, Encode
from ldmkit.conditioning.sections import LayoutConfig
from ldmkit.conditioning.xtransformer import XTransformerEncoder
from ldmkit.data.boxes import PAD_LABEL
from ldmkit.errors import DataError, ShapeError

TOKENS_PER_BOX = 5  # class, x0, y0, x1, y1
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

    batch_keys = ("boxes", "box_labels")

    def __init__(self, cfg: LayoutConfig):
        super().__init__()
        self.num_classes, self.coord_bins, self.max_boxes = cfg.num_classes, cfg.coord_bins, cfg.max_boxes
        self.transformer = XTransformerEncoder(1 + cfg.num_classes + cfg.coord_bins, cfg.embed_dim, cfg.layers,
                                               cfg.max_boxes * TOKENS_PER_BOX)

    def forward(self, raw, batch_size: int, device: torch.device, encode: Encode | None = None) -> Conditioning:
        boxes, labels = self.layout_tensors(raw, batch_size)
        tokens = tokenize(boxes, labels, self.num_classes, self.coord_bins)  # (B, N)
        weight = self.transformer.token_emb.weight
        return {"context": self.transformer(tokens.to(weight.device)).to(device)}  # (B, N, D)

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        return self.forward(None, 1, device)  # (1, N, D), broadcast over the batch

    def layout_tensors(self, raw, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Any raw layout condition -> boxes (B, max_boxes, 4) float32, labels (B, max_boxes) int64, checked."""
        if isinstance(raw, dict) and "box_labels" in raw:  # a collated batch from the dataset
            boxes = torch.as_tensor(raw["boxes"], dtype=torch.float32).cpu()
            labels = torch.as_tensor(raw["box_labels"]).cpu()
            if boxes.dim() != 3 or boxes.shape[0] != batch_size or boxes.shape[2] != 4 \
                    or labels.shape != boxes.shape[:2]:
                raise ShapeError(f"a batch of layouts needs boxes (B, M, 4) and box_labels (B, M) with B = "
                                 f"{batch_size}, got {tuple(boxes.shape)} and {tuple(labels.shape)}")
            rows = [(boxes[i], labels[i]) for i in range(batch_size)]
        else:
            layouts = list(raw) if isinstance(raw, (list, tuple)) else [raw] * batch_size
            if len(layouts) != batch_size:
                raise ShapeError(f"got {len(layouts)} layouts for a batch of {batch_size}; give one per sample")
            rows = [self._one(layout) for layout in layouts]
        out = [self._padded(b, lab) for b, lab in rows]
        return torch.stack([b for b, _ in out]), torch.stack([lab for _, lab in out])

    def _one(self, layout) -> tuple[torch.Tensor, torch.Tensor]:
        """One layout {"boxes": (n, 4), "labels": (n,)} (or None: empty) -> tensors."""
        if layout is None:
            return torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
        if not isinstance(layout, dict) or not {"boxes", "labels"} <= set(layout):
            raise DataError(f"a layout is a dict {{'boxes': [[x0, y0, x1, y1], ...], 'labels': [class, ...]}} with "
                            f"normalised corners, got {type(layout).__name__}")
        boxes = torch.as_tensor(layout["boxes"], dtype=torch.float32).cpu().reshape(-1, 4)
        labels = torch.as_tensor(layout["labels"]).cpu().reshape(-1)
        if labels.shape[0] != boxes.shape[0]:
            raise ShapeError(f"a layout has {boxes.shape[0]} boxes but {labels.shape[0]} labels; give one label "
                             f"per box")
        return boxes, labels

    def _padded(self, boxes: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise DataError(f"box labels must be integer class indices, got {labels.dtype}")
        labels = labels.long()
        real = labels != PAD_LABEL
        if int(real.sum()) > self.max_boxes:
            raise ShapeError(f"a layout has {int(real.sum())} boxes but this model reads at most "
                             f"max_boxes={self.max_boxes}; drop the smallest ones")
        boxes, labels = boxes[real], labels[real]
        if bool(((labels < 0) | (labels >= self.num_classes)).any()):
            raise DataError(f"box labels must be in [0, {self.num_classes}) (or {PAD_LABEL} for padding), "
                            f"got {sorted(set(labels.tolist()))}")
        x0, y0, x1, y1 = boxes.unbind(-1)
        eps = 1e-4
        if not torch.isfinite(boxes).all() or bool((boxes < -eps).any() or (boxes > 1 + eps).any()) \
                or bool((x1 < x0).any() or (y1 < y0).any()):
            raise DataError(f"boxes must be normalised corners 0 <= x0 <= x1 <= 1, 0 <= y0 <= y1 <= 1, got "
                            f"{boxes.tolist()}")
        n = labels.shape[0]
        padded_boxes = torch.cat([boxes, torch.zeros(self.max_boxes - n, 4)])  # (max_boxes, 4)
        padded_labels = torch.cat([labels, torch.full((self.max_boxes - n,), PAD_LABEL)])  # (max_boxes,)
        return padded_boxes, padded_labels


def build(cfg) -> LayoutEncoder:
    """The layout encoder of a ConditioningConfig of kind 'layout'."""
    return LayoutEncoder(cfg.layout)

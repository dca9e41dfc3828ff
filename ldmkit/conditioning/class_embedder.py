"""Class labels as one context token: the paper's ClassEmbedder for class-conditional LDMs.

tau(y) = embedding[y] as a (B, 1, D) token the UNet cross-attends to. The unconditional ("null")
class used for classifier-free guidance is one more learned row (index num_classes) by default;
CompVis checkpoints use a row of their own table instead (`ClassConfig.null_index`). The table is
`embedding.weight`, as in CompVis, so their `cond_stage_model.embedding.weight` loads by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ldmkit.conditioning.base import Conditioner, Conditioning, Encode
from ldmkit.conditioning.sections import ClassConfig
from ldmkit.errors import DataError


def as_labels(raw: torch.Tensor | Sequence[int] | int, batch_size: int, rows: int, device) -> torch.Tensor:
    """Class labels (B,) int64 on `device` from a tensor, a list or one int (repeated), range-checked."""
    try:
        labels = torch.as_tensor(raw).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"class labels must be integers (a tensor, a list or one int), got {raw!r}") from err
    if labels.numel() == 1 and batch_size != 1:
        labels = labels.expand(batch_size)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DataError(f"class labels must be integers, got {labels.dtype}")
    if labels.shape != (batch_size,):
        raise DataError(f"got {labels.numel()} class labels for a batch of {batch_size}; give one per sample")
    if bool(((labels < 0) | (labels >= rows)).any()):
        raise DataError(f"class labels must be in [0, {rows}), got {sorted(set(labels.tolist()))}")
    return labels.to(device=device, dtype=torch.int64)


class ClassEmbedder(Conditioner):
    """`{"context": embedding[labels][:, None]}`: (B,) labels -> (B, 1, embed_dim)."""

    batch_keys = ("label",)

    def __init__(self, cfg: ClassConfig):
        super().__init__()
        self.rows, self.null_label, self.names = cfg.rows, cfg.null_label, cfg.names
        self.embedding = nn.Embedding(cfg.rows, cfg.embed_dim)

    def label_of(self, value: int | str | None) -> int:
        """A class index from an index, a class name (or a unique prefix of one), or None (null)."""
        if value is None:
            return self.null_label
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            matches = [i for i, name in enumerate(self.names) if name.lower().startswith(value.lower())]
            exact = [i for i, name in enumerate(self.names) if name.lower() == value.lower()]
            if len(exact or matches) != 1:
                known = ", ".join(f"{i}: {n}" for i, n in enumerate(self.names)) or "none stored in this model"
                raise DataError(f"class {value!r} is {'ambiguous' if matches else 'unknown'}; classes: {known}")
            return (exact or matches)[0]
        return int(value)

    def forward(self, raw, batch_size: int, device: torch.device, encode: Encode | None = None) -> Conditioning:
        """raw: (B,) labels, a list of ints / class names, or one for the batch; None: the null class."""
        if raw is None or isinstance(raw, (int, str)):
            raw = [self.label_of(raw)] * batch_size
        elif isinstance(raw, (list, tuple)):
            raw = [self.label_of(r) for r in raw]
        labels = as_labels(raw, batch_size, self.rows, self.embedding.weight.device)
        return {"context": self.embedding(labels)[:, None].to(device)}  # (B, 1, D)

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        return self.forward(None, batch_size, device)


def build(cfg) -> ClassEmbedder:
    """The class embedder of a ConditioningConfig of kind 'class'."""
    return ClassEmbedder(cfg.class_label)

"""Class labels as one context token: the paper's ClassEmbedder for class-conditional LDMs.

tau(y) = embedding[y] as a (B, 1, D) token the UNet cross-attends to. With
`ClassConfig.injection = "timestep"` the labels go to the UNet as they are ("y": its label_emb
adds a learned vector to the timestep embedding, ADM-style) and this module holds no table.
The unconditional ("null") class used for classifier-free guidance is one more learned row (index
num_classes) by default; CompVis checkpoints use a row of their own table instead
(`ClassConfig.null_index`). The table is `embedding.weight`, as in CompVis, so their
`cond_stage_model.embedding.weight` loads by name.
"""

from __future__ import annotations

import torch
from torch import nn

from ldmkit.conditioning.base import Conditioner, Conditioning, Encode
from ldmkit.conditioning.sections import ClassConfig
from ldmkit.errors import DataError


class ClassEmbedder(Conditioner):
    """`{"context": embedding[labels][:, None]}`: (B,) labels -> (B, 1, embed_dim)."""

    def __init__(self, cfg: ClassConfig):
        super().__init__()
        self.rows, self.null_label = cfg.rows, cfg.null_label
        self.to_timestep = cfg.injection == "timestep"
        if not self.to_timestep:
            self.embedding = nn.Embedding(cfg.rows, cfg.embed_dim)

    def forward(self, labels: torch.Tensor, encode: Encode | None = None) -> Conditioning:
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point() \
                or labels.is_complex() or labels.dtype == torch.bool:
            raise DataError(f"class labels must be a (B,) tensor of integers, got "
                            f"{labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__}"
                            f"{' of shape ' + str(tuple(labels.shape)) if isinstance(labels, torch.Tensor) else ''}")
        if bool(((labels < 0) | (labels >= self.rows)).any()):
            raise DataError(f"class labels must be in [0, {self.rows}), got {sorted(set(labels.tolist()))}")
        if self.to_timestep:
            return {"y": labels.to(torch.int64)}  # (B,): the UNet's label_emb reads them
        weight = self.embedding.weight
        return {"context": self.embedding(labels.to(weight.device, torch.int64))[:, None]}  # (B, 1, D)

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        labels = torch.full((batch_size,), self.null_label, dtype=torch.int64)
        return {k: v.to(device) for k, v in self(labels).items()}

"""The conditioning contract: tau_theta turns a batch's condition into what the UNet reads.

A conditioner maps the raw condition of a batch (labels, captions, maps, ... or nothing) to a
dict of UNet inputs, any of
    "context": (B, N, D) tokens for cross-attention,
    "concat":  (B, C, h, w) maps concatenated to the latent,
    "y":       (B,) class labels added to the timestep embedding,
and gives the unconditional ("null") version of the same dict for classifier-free guidance.
Training replaces the condition of a random subset of the batch by the null one (`drop`).
"""

from __future__ import annotations

import torch
from torch import nn

Conditioning = dict[str, torch.Tensor]


class Conditioner(nn.Module):
    """Base class; `batch_key` names the field of a data batch that holds the raw condition."""

    batch_key: str | None = None

    def forward(self, raw, batch_size: int, device: torch.device) -> Conditioning:
        raise NotImplementedError

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        raise NotImplementedError

    def drop(self, cond: Conditioning, keep: torch.Tensor) -> Conditioning:
        """Replace the entries where keep (B,) is False by the null condition."""
        null = self.null(keep.shape[0], keep.device)
        out = {}
        for name, value in cond.items():
            mask = keep.view(-1, *([1] * (value.ndim - 1)))
            out[name] = torch.where(mask, value, null[name].to(value.dtype).expand_as(value))
        return out


class Unconditional(Conditioner):
    """No condition at all: the UNet sees only x_t and t."""

    def forward(self, raw, batch_size: int, device: torch.device) -> Conditioning:
        return {}

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        return {}

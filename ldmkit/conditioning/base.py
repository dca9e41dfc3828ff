"""The conditioning contract: tau_theta turns a condition y into what the UNet reads.

A conditioner takes the condition of a batch as tensors (captions as strings) and returns a dict of
UNet inputs:
    "context": (B, N, D) tokens for cross-attention,
    "concat":  (B, C, h, w) maps concatenated to the latent z_t (h, w: the latent's size),
    "y":       (B,) class labels added to the timestep embedding,
and `null(batch_size, device)` gives the unconditional version of the same dict, for
classifier-free guidance (size-1 dimensions broadcast over the batch and the latent's size).

What each kind takes (`forward(cond)`):
    class     (B,) int64 labels
    text      B captions (list of str)
    layout    {"boxes": (B, M, 4) normalised corners, "labels": (B, M) int64, PAD_LABEL = padding}
    semantic  (B, H, W) int64 label ids
    low_res   (B, C, h, w) images in [-1, 1]
    inpaint   {"image": (B, 3, H, W) in [-1, 1], "mask": (B, 1, H, W), 1 = hole}
    hybrid    {kind: the condition of that kind, ...}
Reading conditions from a data batch (and deriving low-res or masked images for training) is
`ldmkit.data.conditions`; turning a user's input (class names, PIL images, layout JSON) into these
tensors is `ldmkit.pipeline.conditions`. `forward` receives `encode`, the LDM's first-stage encoder
(images -> scaled latents), for conditions that live in latent space (the paper's inpainting
concatenates the encoded masked image).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Conditioning = dict[str, torch.Tensor]
Encode = Callable[[torch.Tensor], torch.Tensor]


class Conditioner(nn.Module):
    """Base class: subclasses implement forward and null, and set concat_channels if they concatenate."""

    concat_channels: int = 0  # channels this conditioner concatenates to z_t

    def forward(self, cond: Any, encode: Encode | None = None) -> Conditioning:
        raise NotImplementedError

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        raise NotImplementedError


class Unconditional(Conditioner):
    """No condition at all: the UNet sees only z_t and t."""

    def forward(self, cond: Any = None, encode: Encode | None = None) -> Conditioning:
        return {}

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        return {}


def to_device(cond: Any, device: torch.device) -> Any:
    """A condition in tensor form with every tensor on `device` (captions stay strings)."""
    if isinstance(cond, torch.Tensor):
        return cond.to(device)
    if isinstance(cond, dict):
        return {k: to_device(v, device) for k, v in cond.items()}
    return cond

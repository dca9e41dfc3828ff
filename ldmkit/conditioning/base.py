"""The conditioning contract: tau_theta turns a condition y into what the UNet reads.

A conditioner maps the raw condition of a batch (class labels, captions, boxes, maps, a
low-resolution image, a masked image and its mask, ... or nothing) to a dict of UNet inputs:
    "context": (B, N, D) tokens for cross-attention,
    "concat":  (B, C, h, w) maps concatenated to the latent z_t (h, w: the latent's size),
    "y":       (B,) class labels added to the timestep embedding,
and gives the unconditional ("null") version of the same dict for classifier-free guidance.

Life of a condition:
- training: `prepare(batch, generators)` derives the raw condition from a data batch (e.g. the
  caption strings, or a degraded copy of the image, or a random mask drawn from each sample's
  generator); `forward` encodes it; `drop` replaces a random subset by the null condition.
- sampling: the user gives the raw condition directly (`pipe(condition=...)`).
`forward` receives `encode`, the LDM's first-stage encoder (images -> scaled latents), for
conditions that live in latent space (the paper's inpainting concatenates the encoded masked image).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ldmkit.errors import DataError

Conditioning = dict[str, torch.Tensor]
Encode = Callable[[torch.Tensor], torch.Tensor]


class Conditioner(nn.Module):
    """Base class. Subclasses set the class attributes below and implement forward and null."""

    batch_keys: tuple[str, ...] = ()  # fields of a data batch that `prepare` reads
    needs_images: bool = False  # the condition is computed from the training image itself
    concat_channels: int = 0  # channels this conditioner concatenates to z_t

    def prepare(self, batch: dict, generators: list[torch.Generator]) -> Any:
        """The raw condition of a training batch (default: the single batch field it reads)."""
        if not self.batch_keys:
            return None
        missing = [key for key in self.batch_keys if key not in batch]
        if missing:
            raise DataError(f"the training batch has no {', '.join(missing)} (it has {', '.join(sorted(batch))}), "
                            f"which {type(self).__name__} reads: pick a dataset that provides it (e.g. boxes and "
                            f"label maps: data.dataset scenes); the latent cache keeps only latents, labels, "
                            f"captions and images, so set latent_cache: false for other fields")
        if len(self.batch_keys) == 1:
            return batch[self.batch_keys[0]]
        return {key: batch[key] for key in self.batch_keys}

    def image_size(self, raw: Any) -> tuple[int, int] | None:
        """The (H, W) in pixels of the image a raw condition asks for (e.g. 4x a low-res input);
        None: any size (the pipeline then uses the training size)."""
        return None

    def forward(self, raw: Any, batch_size: int, device: torch.device, encode: Encode | None = None) -> Conditioning:
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
    """No condition at all: the UNet sees only z_t and t."""

    def forward(self, raw: Any, batch_size: int, device: torch.device, encode: Encode | None = None) -> Conditioning:
        return {}

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        return {}

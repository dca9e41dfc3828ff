"""Two conditions at once: context tokens from one conditioner, concatenated maps from another.

CompVis' conditioning_key "hybrid" (e.g. a caption for cross-attention plus a low-resolution or
masked image concatenated to z_t). The condition is a dict with one entry per part, keyed by its
kind, e.g. {"text": captions, "low_res": images}; the UNet inputs are the union of both parts'
({"context": ..., "concat": ...}), and so are their null versions.
"""

from __future__ import annotations

import torch
from torch import nn

from ldmkit.conditioning.base import Conditioner, Conditioning, Encode
from ldmkit.errors import DataError


class Hybrid(Conditioner):
    def __init__(self, parts: dict[str, Conditioner]):
        super().__init__()
        self.parts = nn.ModuleDict(parts)
        self.concat_channels = sum(part.concat_channels for part in parts.values())

    def forward(self, cond: dict, encode: Encode | None = None) -> Conditioning:
        if not isinstance(cond, dict) or set(cond) != set(self.parts):
            raise DataError(f"this model reads two conditions at once: give a dict with keys "
                            f"{', '.join(self.parts)}, got {type(cond).__name__}")
        out: Conditioning = {}
        for kind, part in self.parts.items():
            out.update(part(cond[kind], encode=encode))
        return out

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        out: Conditioning = {}
        for part in self.parts.values():
            out.update(part.null(batch_size, device))
        return out

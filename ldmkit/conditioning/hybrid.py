"""Two conditions at once: context tokens from one conditioner, concatenated maps from another.

CompVis' conditioning_key "hybrid" (e.g. a caption for cross-attention plus a low-resolution or
masked image concatenated to z_t). The raw condition is a dict with one entry per part, keyed by
its kind, e.g. {"text": captions, "low_res": images}; the UNet inputs are the union of both parts'
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
        self.batch_keys = tuple(key for part in parts.values() for key in part.batch_keys)
        self.needs_images = any(part.needs_images for part in parts.values())
        self.concat_channels = sum(part.concat_channels for part in parts.values())

    def prepare(self, batch: dict, generators: list[torch.Generator]) -> dict:
        return {kind: part.prepare(batch, generators) for kind, part in self.parts.items()}

    def image_size(self, raw) -> tuple[int, int] | None:
        """The first size a part asks for (e.g. the low-res image's x factor)."""
        if not isinstance(raw, dict):
            return None
        sizes = [part.image_size(raw[kind]) for kind, part in self.parts.items() if raw.get(kind) is not None]
        return next((size for size in sizes if size is not None), None)

    def forward(self, raw, batch_size: int, device: torch.device, encode: Encode | None = None) -> Conditioning:
        if not isinstance(raw, dict) or set(raw) != set(self.parts):
            raise DataError(f"this model reads two conditions at once: give a dict with keys "
                            f"{', '.join(self.parts)}, got {type(raw).__name__}")
        out: Conditioning = {}
        for kind, part in self.parts.items():
            out.update(part(raw[kind], batch_size, device, encode=encode))
        return out

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        out: Conditioning = {}
        for part in self.parts.values():
            out.update(part.null(batch_size, device))
        return out

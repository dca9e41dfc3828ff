"""Decoding large latents in overlapping tiles, so memory stays bounded at any output size.

Each tile of `tile` x `tile` latent pixels is decoded on its own; overlapping tiles are blended
with weights that ramp linearly across the overlap, which hides the seams of a convolutional
decoder whose receptive field is smaller than the overlap.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool, device, dtype) -> torch.Tensor:
    w = torch.ones(length, device=device, dtype=dtype)
    if overlap > 0:
        ramp = torch.linspace(0, 1, overlap + 2, device=device, dtype=dtype)[1:-1]
        if not at_start:
            w[:overlap] = ramp
        if not at_end:
            w[-overlap:] = ramp.flip(0)
    return w


@torch.no_grad()
def decode_tiled(decode: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, factor: int,
                 tile: int = 32, overlap: int = 8) -> torch.Tensor:
    """decode(z) for z (B, C, h, w), computed tile by tile; returns (B, 3, h f, w f)."""
    _, _, h, w = z.shape
    if h <= tile and w <= tile:
        return decode(z)
    stride = tile - overlap
    out = weight = None
    rows, cols = _starts(h, tile, stride), _starts(w, tile, stride)
    for top in rows:
        for left in cols:
            part = decode(z[:, :, top:top + tile, left:left + tile])  # (B, 3, th f, tw f)
            if out is None:
                out = z.new_zeros(z.shape[0], part.shape[1], h * factor, w * factor, dtype=part.dtype)
                weight = z.new_zeros(1, 1, h * factor, w * factor, dtype=part.dtype)
            ph, pw = part.shape[-2:]
            wy = _ramp(ph, overlap * factor, top == 0, top == rows[-1], z.device, part.dtype)
            wx = _ramp(pw, overlap * factor, left == 0, left == cols[-1], z.device, part.dtype)
            mask = wy[:, None] * wx[None, :]  # (th f, tw f)
            ys, xs = slice(top * factor, top * factor + ph), slice(left * factor, left * factor + pw)
            out[:, :, ys, xs] += part * mask
            weight[:, :, ys, xs] += mask
    return out / weight

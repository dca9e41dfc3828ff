"""Large outputs in overlapping tiles, so memory stays bounded at any output size.

`blend_tiles` is the one tiling loop: each tile of `tile` x `tile` input pixels is processed on
its own and overlapping outputs are blended with weights that ramp linearly across the overlap,
which hides the seams of a convolutional network whose receptive field is smaller than the
overlap. `decode_tiled` decodes latents with it; super-resolution (pipeline/upscale.py) diffuses
and decodes tiles of the low-resolution image with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ldmkit.autoencoder.config import AutoencoderConfig

# Latents decode in tiles whose largest activation (the decoder's full-resolution level, whose first block
# takes the upsampled features of the level below) fits this: Stable Diffusion's 512 px images decode in one
# pass in bfloat16 (256 channels at 512 x 512: 128 MiB there), larger ones in tiles.
DECODE_ACTIVATION_BYTES = 128 * 2**20
DECODE_OVERLAP = 8  # latent pixels shared by neighbouring decode tiles


def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def tile_count(height: int, width: int, tile: int, overlap: int) -> int:
    """How many tiles `blend_tiles` computes for an input of height x width pixels."""
    return len(_starts(height, tile, tile - overlap)) * len(_starts(width, tile, tile - overlap))


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool, device, dtype) -> torch.Tensor:
    w = torch.ones(length, device=device, dtype=dtype)
    if overlap > 0:
        ramp = torch.linspace(0, 1, overlap + 2, device=device, dtype=dtype)[1:-1]
        if not at_start:
            w[:overlap] = ramp
        if not at_end:
            w[-overlap:] = ramp.flip(0)
    return w


def blend_tiles(fn: Callable[[slice, slice], torch.Tensor], height: int, width: int, factor: int,
                tile: int, overlap: int) -> torch.Tensor:
    """Assemble an output of (height f, width f) pixels from tiles: fn(ys, xs) computes the output
    (B, C, len(ys) f, len(xs) f) of the input region (ys, xs) of a `tile` x `tile` grid whose tiles
    overlap by `overlap` input pixels; overlaps are blended with linear ramps."""
    stride = tile - overlap
    out = weight = None
    rows, cols = _starts(height, tile, stride), _starts(width, tile, stride)
    for top in rows:
        for left in cols:
            part = fn(slice(top, top + tile), slice(left, left + tile))  # (B, C, th f, tw f)
            if out is None:
                out = part.new_zeros(part.shape[0], part.shape[1], height * factor, width * factor)
                weight = part.new_zeros(1, 1, height * factor, width * factor)
            ph, pw = part.shape[-2:]
            wy = _ramp(ph, overlap * factor, top == 0, top == rows[-1], part.device, part.dtype)
            wx = _ramp(pw, overlap * factor, left == 0, left == cols[-1], part.device, part.dtype)
            mask = wy[:, None] * wx[None, :]  # (th f, tw f)
            ys, xs = slice(top * factor, top * factor + ph), slice(left * factor, left * factor + pw)
            out[:, :, ys, xs] += part * mask
            weight[:, :, ys, xs] += mask
    return out / weight


def decode_tile_size(channels: int, factor: int, dtype: torch.dtype) -> int:
    """The side, in latent pixels, of the largest square tile whose full-resolution decoder activation
    (`channels` at `factor` times the tile's side, in `dtype`) fits DECODE_ACTIVATION_BYTES.
    Tiles cost overlap (a 64 x 64 latent in 32 px tiles decodes 2.25 times its area), so no smaller."""
    return max(16, math.isqrt(DECODE_ACTIVATION_BYTES // (channels * factor**2 * dtype.itemsize)))


def first_stage_tile(first_stage: AutoencoderConfig, dtype: torch.dtype) -> int:
    """decode_tile_size of a first stage's decoder, whose full-resolution level sees ch x ch_mult[1] channels
    (the level below's, upsampled) before its own ch x ch_mult[0]."""
    channels = first_stage.ch * max(first_stage.ch_mult[:2])
    return decode_tile_size(channels, first_stage.downsample_factor, dtype)


@torch.no_grad()
def decode_tiled(decode: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, factor: int,
                 tile: int = 32, overlap: int = DECODE_OVERLAP) -> torch.Tensor:
    """decode(z) for z (B, C, h, w), computed tile by tile; returns (B, 3, h f, w f)."""
    _, _, h, w = z.shape
    if h <= tile and w <= tile:
        return decode(z)
    tile = max(balanced_tile(h, tile, overlap), balanced_tile(w, tile, overlap))
    return blend_tiles(lambda ys, xs: decode(z[:, :, ys, xs]), h, w, factor, tile, overlap)


def balanced_tile(size: int, tile: int, overlap: int) -> int:
    """The smallest tile side that covers `size` in as few tiles as `tile` does: less overlap to compute
    (a 64 px latent in tiles of at most 45 and overlap 8: two of 36, not two of 45 that overlap by 26)."""
    if size <= tile:
        return size
    count = math.ceil((size - overlap) / (tile - overlap))
    return math.ceil((size - overlap) / count) + overlap

"""Super-resolution with a `low_res` LDM at any input size: one pass, or overlapping tiles.

The output is exactly `factor` times the input. An input whose size is not a multiple of what the
model takes (`lr_multiple`) is padded by edge replication and the output cropped back. Inputs no
larger than `tile` pixels are upscaled in one pass; larger ones tile by tile: every tile of the LR
image is diffused (conditioned on that tile) and decoded on its own, and the overlaps are blended
with linear ramps (`tiling.blend_tiles`). All tiles cut their start noise from one noise field drawn
for the whole image from the seed, so neighbouring tiles start from the same noise where they
overlap. With `color_fix`, each output tile is shifted per channel to the mean colour of its LR
tile, which keeps tiles from drifting apart in colour; without it, an input that fits in one tile
gets exactly the image `pipe(condition=lr, seed=seed)` gives (for deterministic samplers, e.g. DDIM).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from ldmkit.data.images import flatten_to_rgb, to_pil, to_tensor
from ldmkit.diffusion.noise import randn_like_per_sample, seeded_generators
from ldmkit.errors import ConfigError
from ldmkit.pipeline.conditions import image_tensor, model_name
from ldmkit.pipeline.generate import Pipeline
from ldmkit.pipeline.metadata import PNG_KEY, image_metadata
from ldmkit.pipeline.model import LatentDiffusion
from ldmkit.pipeline.tiling import blend_tiles, tile_count
from ldmkit.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS
from ldmkit.sampling.img2img import check_strength


def sr_factor(model: LatentDiffusion) -> int:
    """The model's super-resolution factor, with a clear error for models of other tasks."""
    kind = model.config.conditioning.kind
    if kind != "low_res":
        raise ConfigError(f"this is {model_name(model.config.conditioning)}; upscaling needs a super-resolution model "
                          "(conditioning.kind: low_res), e.g. one trained with configs/ldm/sr-emoji64.yaml")
    return model.config.conditioning.low_res.factor


def lr_multiple(model: LatentDiffusion) -> int:
    """LR pixels an input side must be a multiple of: factor x side must be a multiple of f x the UNet's."""
    factor = sr_factor(model)
    hr = model.factor * model.config.unet.size_multiple
    return math.lcm(hr, factor) // factor


def smallest_tile(model: LatentDiffusion) -> int:
    """LR pixels one side of a tile needs at least (a multiple of `lr_multiple`)."""
    m = lr_multiple(model)
    return math.ceil(model.minimum_size / sr_factor(model) / m) * m


def tile_sizes(model: LatentDiffusion, tile: int, overlap: int | None = None) -> tuple[int, int]:
    """(tile, overlap) in LR pixels, checked to be what the model can take: the tile a multiple of
    `lr_multiple`, at least `smallest_tile`; the overlap a multiple too, in 0 .. tile - multiple (None: a
    quarter of the tile). A clear error naming the valid range otherwise, never a silent adjustment."""
    m, smallest = lr_multiple(model), smallest_tile(model)
    step = f", a multiple of {m}" if m > 1 else ""
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < smallest or tile % m:
        near = max(smallest, tile // m * m) if isinstance(tile, int) else 64
        raise ConfigError(f"tile must be a whole number of LR pixels >= {smallest}{step} (what this model takes), "
                          f"got {tile!r}; use e.g. {near}")
    if overlap is None:
        overlap = tile // 4 // m * m
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap <= tile - m or overlap % m:
        raise ConfigError(f"overlap must be a whole number of LR pixels in 0 .. {tile - m}{step} (less than the tile "
                          f"of {tile}), got {overlap!r}; use e.g. {tile // 4 // m * m}, or a larger tile")
    return tile, overlap


def _match_mean(out: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """Shift out (B, 3, H, W) per channel to the mean colour of lr (B, 3, h, w)."""
    return out + (lr.mean(dim=(2, 3), keepdim=True) - out.mean(dim=(2, 3), keepdim=True))


@torch.no_grad()
def upscale_tensor(pipe: Pipeline, lr: torch.Tensor, steps: int = DEFAULT_STEPS, sampler: str = DEFAULT_SAMPLER,
                   seed: int = 0,
                   guidance: float = 1.0, eta: float | None = None, tile: int = 64, overlap: int | None = None,
                   color_fix: bool = True, callback: Callable[[dict], None] | None = None,
                   strength: float | None = None) -> torch.Tensor:
    """lr (3, h, w) or (1, 3, h, w) in [-1, 1] -> (1, 3, factor h, factor w) in [-1, 1].

    `strength` in [0, 1]: start each tile from its bicubic enlargement noised that far (img2img,
    sampling/img2img.py) instead of from pure noise.
    `tile` and `overlap` are in LR pixels, as `tile_sizes` checks them (overlap None: a quarter of the tile);
    `callback(info)` gets every step's report (sampling/progress.py) of every tile, with "tile" (index) and
    "tiles"."""
    model = pipe.model
    if strength is not None:
        check_strength(strength)
    tile, overlap = tile_sizes(model, tile, overlap)
    factor, m = sr_factor(model), lr_multiple(model)
    lr = image_tensor(lr, "low-resolution image")[None].to(pipe.device)  # (1, 3, h, w)
    h, w = lr.shape[-2:]
    height, width = math.ceil(h / m) * m, math.ceil(w / m) * m
    smallest = smallest_tile(model)
    if height < smallest and width < smallest:
        height = smallest
    padded = F.pad(lr, (0, width - w, 0, height - h), mode="replicate")  # (1, 3, H, W)
    f = model.factor
    shape = model.latent_shape(height * factor, width * factor)  # (C, H factor / f, W factor / f)
    x_T = randn_like_per_sample((1, *shape), seeded_generators([seed]), "cpu", torch.float32)
    tiles, done = tile_count(height, width, tile, overlap), []

    def report(info: dict) -> None:
        callback({**info, "tile": len(done), "tiles": tiles})

    def run(ys: slice, xs: slice) -> torch.Tensor:
        part = padded[:, :, ys, xs]  # (1, 3, th, tw)
        th, tw = part.shape[-2:]
        top, left = ys.start * factor // f, xs.start * factor // f  # in latent pixels
        noise = x_T[:, :, top:top + th * factor // f, left:left + tw * factor // f]
        if noise.shape == x_T.shape:  # one tile: the seed draws it, so stochastic samplers' steps match pipe()'s
            noise = None
        init = None if strength is None else pipe.encode(
            F.interpolate(part, scale_factor=factor, mode="bicubic").clamp(-1, 1))  # (1, C, th f', tw f')
        z = pipe.latents([seed], part, steps, sampler, guidance, eta, th * factor, tw * factor, x_T=noise,
                         callback=report if callback else None, init=init, strength=strength)
        done.append(1)
        out = pipe.decode(z).float()  # (1, 3, th factor, tw factor)
        return _match_mean(out, part) if color_fix else out

    if height <= tile and width <= tile:
        out = run(slice(0, height), slice(0, width))
    else:
        out = blend_tiles(run, height, width, factor, tile, overlap)
    return out[:, :, :h * factor, :w * factor].clamp(-1, 1)


def upscale(pipe: Pipeline, image: Image.Image, steps: int = DEFAULT_STEPS, sampler: str = DEFAULT_SAMPLER,
            seed: int = 0,
            guidance: float = 1.0, eta: float | None = None, tile: int = 64, overlap: int | None = None,
            color_fix: bool = True, inputs: dict | None = None,
            callback: Callable[[dict], None] | None = None, strength: float | None = None) -> Image.Image:
    """A PIL image upscaled `factor` times (transparency is flattened onto white first), carrying its
    generation parameters (pipeline/metadata.py; `inputs` describes where the input came from)."""
    tile, overlap = tile_sizes(pipe.model, tile, overlap)  # (the overlap recorded is the one used)
    lr = to_tensor(flatten_to_rgb(image))
    out = to_pil(upscale_tensor(pipe, lr, steps, sampler, seed, guidance, eta, tile, overlap, color_fix, callback,
                                strength)[0])
    params = pipe.recorded({"steps": steps, "sampler": sampler, "guidance": guidance, "eta": eta, "height": out.height,
                            "width": out.width, "tile": tile, "overlap": overlap, "color_fix": color_fix})
    if strength is not None:
        params["strength"] = strength
    out.info[PNG_KEY] = image_metadata(pipe, params, [seed], 0, lr, task="upscale", inputs=inputs or {})
    return out

"""Random inpainting masks: thick strokes and boxes, after LaMa's "large masks" (Suvorov et al. 2022).

Convention everywhere in ldmkit: a mask is (1, H, W) or (B, 1, H, W) float with 1 = hole (to be
generated) and 0 = keep; the masked image is image * (1 - mask), i.e. holes are 0 (mid grey in
[-1, 1] units).

Each mask is either a few thick random strokes (polylines whose segments have random direction,
length and width, drawn with round caps) or a few random axis-aligned boxes; sizes are fractions
of the image side, LaMa's 256-px settings divided by 256, so a mask looks alike at any resolution.
A mask covering more than `max_coverage` (or less than `min_coverage`) of the image is redrawn.
Every random choice comes from the sample's torch.Generator.
"""

from __future__ import annotations

import math

import torch

from ldmkit.conditioning.sections import MaskConfig
from ldmkit.errors import LdmkitError


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high]."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _segment(mask: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, a: tuple[float, float],
             b: tuple[float, float], width: float) -> None:
    """Set the pixels whose centres lie within width / 2 of segment a-b (round caps) to 1, in place."""
    (ay, ax), (by, bx) = a, b
    dy, dx = by - ay, bx - ax
    length2 = dy * dy + dx * dx
    t = (((ys - ay) * dy + (xs - ax) * dx) / length2).clamp(0, 1) if length2 > 0 else torch.zeros_like(ys)
    dist2 = (ys - (ay + t * dy)) ** 2 + (xs - (ax + t * dx)) ** 2  # (H, W)
    mask[dist2 <= (width / 2) ** 2] = 1.0


def _strokes(height: int, width: int, side: float, cfg: MaskConfig, generator: torch.Generator) -> torch.Tensor:
    mask = torch.zeros(height, width)
    ys = torch.arange(height, dtype=torch.float32)[:, None] + 0.5  # pixel centres (H, 1)
    xs = torch.arange(width, dtype=torch.float32)[None, :] + 0.5  # (1, W)
    for _ in range(_randint(generator, *cfg.strokes)):
        y, x = _uniform(generator, 0, height), _uniform(generator, 0, width)
        for _ in range(_randint(generator, *cfg.segments)):
            angle = _uniform(generator, 0, 2 * math.pi)
            length = side * _uniform(generator, *cfg.segment_length)
            thickness = max(1.0, side * _uniform(generator, *cfg.stroke_width))
            end = (min(max(y + length * math.sin(angle), 0.0), height), min(max(x + length * math.cos(angle), 0.0),
                                                                            width))
            _segment(mask, ys, xs, (y, x), end, thickness)
            y, x = end
    return mask


def _boxes(height: int, width: int, side: float, cfg: MaskConfig, generator: torch.Generator) -> torch.Tensor:
    mask = torch.zeros(height, width)
    margin = round(cfg.margin * side)
    for _ in range(_randint(generator, *cfg.boxes)):
        box_h = max(1, min(height - 2 * margin, round(side * _uniform(generator, *cfg.box_size))))
        box_w = max(1, min(width - 2 * margin, round(side * _uniform(generator, *cfg.box_size))))
        top = _randint(generator, margin, max(margin, height - margin - box_h))
        left = _randint(generator, margin, max(margin, width - margin - box_w))
        mask[top:top + box_h, left:left + box_w] = 1.0
    return mask


def large_mask(height: int, width: int, generator: torch.Generator, cfg: MaskConfig = MaskConfig()) -> torch.Tensor:
    """One random mask (1, H, W), 1 = hole, drawn from `generator` alone."""
    side = math.sqrt(height * width)
    for _ in range(cfg.max_tries):
        draw = _strokes if float(torch.rand((), generator=generator)) < cfg.stroke_prob else _boxes
        mask = draw(height, width, side, cfg, generator)
        if cfg.min_coverage <= float(mask.mean()) <= cfg.max_coverage:
            break
    return mask[None]


def large_masks(height: int, width: int, generators: list[torch.Generator],
                cfg: MaskConfig = MaskConfig()) -> torch.Tensor:
    """(B, 1, H, W) masks, mask i drawn from generators[i] alone."""
    if not generators or isinstance(generators, torch.Generator):
        raise LdmkitError("large_masks needs a list of per-sample torch.Generators, one per mask")
    return torch.stack([large_mask(height, width, g, cfg) for g in generators])

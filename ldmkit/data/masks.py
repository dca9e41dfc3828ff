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
from dataclasses import dataclass

import torch

from ldmkit.errors import ConfigError, LdmkitError


@dataclass(frozen=True)
class MaskConfig:
    stroke_prob: float = 0.7  # share of masks made of strokes; the others are boxes
    strokes: tuple[int, int] = (1, 5)  # strokes per mask (LaMa large: 1-5)
    segments: tuple[int, int] = (1, 5)  # segments per stroke
    segment_length: tuple[float, float] = (10 / 256, 210 / 256)  # fraction of the image side
    stroke_width: tuple[float, float] = (5 / 256, 105 / 256)  # fraction of the image side
    boxes: tuple[int, int] = (1, 4)  # boxes per mask (LaMa large: 1-4)
    box_size: tuple[float, float] = (30 / 256, 150 / 256)  # side of a box, fraction of the image side
    margin: float = 10 / 256  # boxes keep this far from the border
    min_coverage: float = 0.02  # redraw masks with a smaller hole ...
    max_coverage: float = 0.6  # ... or a larger one
    max_tries: int = 20  # redraws before the last draw is kept as it is

    def __post_init__(self):
        for key in ("strokes", "segments", "segment_length", "stroke_width", "boxes", "box_size"):
            object.__setattr__(self, key, tuple(getattr(self, key)))  # lists from Python callers
            value = getattr(self, key)
            if len(value) != 2 or not 0 <= value[0] <= value[1]:
                raise ConfigError(f"inpaint mask setting '{key}' must be a range [low, high] with 0 <= low <= high, "
                                  f"got {value}")
        if not 0.0 <= self.stroke_prob <= 1.0:
            raise ConfigError(f"inpaint mask setting 'stroke_prob' must be in [0, 1], got {self.stroke_prob}")
        if not 0.0 <= self.min_coverage < self.max_coverage <= 1.0:
            raise ConfigError(f"inpaint mask coverage range [{self.min_coverage}, {self.max_coverage}] must satisfy "
                              "0 <= min_coverage < max_coverage <= 1")
        if self.max_tries < 1:
            raise ConfigError(f"inpaint mask setting 'max_tries' must be at least 1, got {self.max_tries}")


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

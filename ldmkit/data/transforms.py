"""Per-sample augmentation with an explicit random source: resize, crop, horizontal flip."""

from __future__ import annotations

from typing import Literal

import torch
from PIL import Image

Crop = Literal["center", "random"]


def resize_and_crop(img: Image.Image, size: int, crop: Crop = "center",
                    generator: torch.Generator | None = None) -> Image.Image:
    """Scale the short side to `size` (antialiased bicubic), then take a size x size crop."""
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BICUBIC, reducing_gap=3.0)
    if crop == "random":
        if generator is None:
            raise ValueError("a random crop needs a torch.Generator")
        left = int(torch.randint(new_w - size + 1, (1,), generator=generator))
        top = int(torch.randint(new_h - size + 1, (1,), generator=generator))
    else:
        left, top = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((left, top, left + size, top + size))


def random_flip(image: torch.Tensor, generator: torch.Generator | None, p: float = 0.5) -> torch.Tensor:
    """Mirror a (..., H, W) tensor left-right with probability p (no-op without a generator)."""
    if generator is not None and float(torch.rand((), generator=generator)) < p:
        return image.flip(-1)
    return image


def sample_generator(seed: int | None) -> torch.Generator | None:
    """The per-sample random source the sampler hands to a dataset (None: deterministic view)."""
    return None if seed is None else torch.Generator().manual_seed(seed)


def derive_seed(seed: int, stream: int) -> int:
    """An independent seed for another random stream of the same sample (e.g. its diffusion noise)."""
    return (seed * 6364136223846793005 + 1442695040888963407 * (stream + 1)) % (2**63)


def stream_generators(seeds: list[int], stream: int) -> list[torch.Generator]:
    """One generator per sample for random stream `stream` (see `derive_seed`)."""
    return [torch.Generator().manual_seed(derive_seed(int(s), stream)) for s in seeds]

"""Per-sample augmentation with an explicit random source: resize, crop, horizontal flip."""

from __future__ import annotations

from typing import Literal

import torch
from PIL import Image

Crop = Literal["center", "random"]


def crop_window(width: int, height: int, size: int, crop: Crop = "center",
                generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """(new_width, new_height, left, top): the short side scaled to `size`, then a size x size window.

    Shared by everything that must follow an image's resize and crop (boxes, label maps).
    """
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if crop == "random":
        if generator is None:
            raise ValueError("a random crop needs a torch.Generator")
        left = int(torch.randint(new_w - size + 1, (1,), generator=generator))
        top = int(torch.randint(new_h - size + 1, (1,), generator=generator))
    else:
        left, top = (new_w - size) // 2, (new_h - size) // 2
    return new_w, new_h, left, top


def apply_window(img: Image.Image, window: tuple[int, int, int, int], size: int) -> Image.Image:
    """Resize (antialiased bicubic) and crop an image as `crop_window` says."""
    new_w, new_h, left, top = window
    if (new_w, new_h) != img.size:
        img = img.resize((new_w, new_h), Image.BICUBIC, reducing_gap=3.0)
    return img.crop((left, top, left + size, top + size))


def resize_and_crop(img: Image.Image, size: int, crop: Crop = "center",
                    generator: torch.Generator | None = None) -> Image.Image:
    """Scale the short side to `size` (antialiased bicubic), then take a size x size crop."""
    return apply_window(img, crop_window(*img.size, size, crop, generator), size)


def random_flip(image: torch.Tensor, generator: torch.Generator | None, p: float = 0.5) -> torch.Tensor:
    """Mirror a (..., H, W) tensor left-right with probability p (no-op without a generator)."""
    return image.flip(-1) if draw_flip(generator, p) else image


def draw_flip(generator: torch.Generator | None, p: float = 0.5) -> bool:
    """Whether to mirror a sample (one draw, the same as `random_flip`'s), for flipping several fields."""
    return generator is not None and float(torch.rand((), generator=generator)) < p


def sample_generator(seed: int | None) -> torch.Generator | None:
    """The per-sample random source the sampler hands to a dataset (None: deterministic view)."""
    return None if seed is None else torch.Generator().manual_seed(seed)


def view_seed(seed: int, view: int) -> int:
    """The fixed seed of crop `view` of the sample with index or seed `seed` (the latent cache's views)."""
    return (seed * 1_000_003 + view) % (2**63)


def derive_seed(seed: int, stream: int) -> int:
    """An independent seed for another random stream of the same sample (e.g. its diffusion noise)."""
    return (seed * 6364136223846793005 + 1442695040888963407 * (stream + 1)) % (2**63)


def stream_generators(seeds: list[int], stream: int) -> list[torch.Generator]:
    """One generator per sample for random stream `stream` (see `derive_seed`)."""
    return [torch.Generator().manual_seed(derive_seed(int(s), stream)) for s in seeds]

"""Images <-> tensors: reading any file as RGB, the [-1, 1] tensor convention, and grids.

Every image tensor in ldmkit is float, (3, H, W) or (B, 3, H, W), with values in [-1, 1].
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from ldmkit.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white
T = TypeVar("T")

# A truncated file must fail loudly rather than decode as a half-grey image.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def flatten_to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of any PIL image; transparency (RGBA, LA, palette with transparency) over white."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Open any image file as RGB: grayscale, palette and RGBA (over white) are converted."""
    return read_image(Path(path), f"image {path}")


def read_image(source: Path | bytes, what: str, convert: Callable[[Image.Image], T] = flatten_to_rgb) -> T:
    """`convert` of the image in a file or in encoded bytes; every way it cannot be read (missing,
    corrupt, truncated, over Pillow's decompression-bomb limit) is a DataError naming `what`."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            img.load()
            return convert(img)
    except FileNotFoundError as err:
        raise DataError(f"{what} does not exist; check the path") from err
    except IsADirectoryError as err:
        raise DataError(f"{what} is a folder, not an image file; give the path of an image file") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(_too_many_pixels(what, err)) from err
    except UnidentifiedImageError as err:  # (its text names a BytesIO object for bytes)
        raise DataError(f"cannot read {what}: not an image format Pillow knows; replace or delete the file") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"cannot read {what}: {err}; replace or delete the file") from err


def _too_many_pixels(what: str, err: Exception) -> str:
    # Pillow says "Image size (N pixels) exceeds limit of L pixels, ..." (its limit stays as the user set it)
    found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+) pixels", str(err))
    if found is None:
        return f"{what} is too large for Pillow ({err}); downscale it first"
    pixels, limit = int(found.group(1)), int(found.group(2))
    return (f"{what} has {pixels:,} pixels, more than Pillow's decompression-bomb limit of {limit:,} "
            f"(PIL.Image.MAX_IMAGE_PIXELS); downscale it first, to at most {limit:,} pixels")


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float32 in [-1, 1]."""
    array = np.asarray(img.convert("RGB"), dtype=np.float32)  # (H, W, 3) in [0, 255]
    return torch.from_numpy(array).permute(2, 0, 1).div(127.5).sub(1.0)


def uint8_to_tensor(array: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.array(array)).movedim(-1, -3).float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) in [-1, 1] -> (..., H, W, 3) uint8, rounding to nearest."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> PIL RGB."""
    return Image.fromarray(to_uint8(image))


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """(N, 3, H, W) in [-1, 1] -> one PIL image with `nrow` images per row on a white background."""
    n, _, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = Image.new("RGB", (nrow * (w + padding) + padding, rows * (h + padding) + padding), BACKGROUND)
    for i, tile in enumerate(to_uint8(images)):
        r, c = divmod(i, nrow)
        grid.paste(Image.fromarray(tile), (padding + c * (w + padding), padding + r * (h + padding)))
    return grid

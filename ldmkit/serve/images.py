"""Images over HTTP: base64 (optionally a data: URL) -> PIL within the server's limits, and PNGs out.

A decoded upload is checked in order: its size in bytes, its base64, then its pixel count from the
header alone (before any pixel is decoded, and before Pillow's own decompression-bomb limit), then
its pixels. Generated images go out as PNGs with
the same text chunk `ldmkit sample` writes (pipeline/metadata.py), so `ldmkit sample --from-png`
reads them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import struct

from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from ldmkit.data.images import to_pil
from ldmkit.pipeline.metadata import PNG_KEY
from ldmkit.serve.errors import ApiError
from ldmkit.version import __version__

DATA_URL = re.compile(r"^data:[\w/.+-]*;base64,", re.IGNORECASE)


def decode_image(data: str, what: str, max_bytes: int, max_pixels: int) -> tuple[Image.Image, str]:
    """A base64 image -> (the loaded PIL image, the sha256 of its bytes); an ApiError names `what` and the
    limit it broke."""
    text = "".join(DATA_URL.sub("", data.strip(), count=1).split())
    if len(text) * 3 // 4 > max_bytes:
        raise ApiError(413, f"{what} is over the upload limit of {max_bytes / (1 << 20):.1f} MiB")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ApiError(422, f"{what} is not valid base64 ({err}); send the image file's bytes in base64") from None
    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.width * img.height > max_pixels:
                raise over_limit(img.size, what, max_pixels)
            img.load()
            return img.copy(), hashlib.sha256(raw).hexdigest()
    except ApiError:
        raise
    except Image.DecompressionBombError:  # Pillow's own limit, checked inside Image.open, before ours
        raise bomb_error(raw, what, max_pixels) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ApiError(422, f"{what} is not an image Pillow can read ({type(err).__name__}); send a PNG, "
                            "JPEG or WebP file in base64") from None


def over_limit(size: tuple[int, int] | None, what: str, max_pixels: int) -> ApiError:
    shown = f"{size[0]}x{size[1]} px" if size else "larger"
    return ApiError(413, f"{what} is {shown}, over the limit of {max_pixels} pixels per image")


def bomb_error(raw: bytes, what: str, max_pixels: int) -> ApiError:
    """The answer to an image Pillow refuses to open for its size (a decompression bomb): the same 413 as
    any image over the server's limit (or over Pillow's, where the server allows more)."""
    size = header_size(raw)
    if size is not None and size[0] * size[1] <= max_pixels:
        return ApiError(413, f"{what} is {size[0]}x{size[1]} px, over Pillow's limit of "
                             f"{2 * Image.MAX_IMAGE_PIXELS} pixels per image")
    return over_limit(size, what, max_pixels)


def header_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) from an image file's header, found as Image.open finds it (the first format whose
    plugin accepts the file) but without Pillow's decompression-bomb check; None if no plugin reads it."""
    Image.init()
    for name in Image.ID:
        factory, accept = Image.OPEN[name]
        accepted = accept(raw[:16]) if accept else True
        if accepted and not isinstance(accepted, str):  # (a str: a warning, not a match)
            try:
                return factory(io.BytesIO(raw), "").size
            except (SyntaxError, IndexError, TypeError, ValueError, OSError, struct.error):
                continue
    return None


def png_bytes(image: Image.Image, extra_text: dict[str, str] | None = None) -> bytes:
    """The PNG file of a generated image, with its ldmkit parameters (and `extra_text` chunks)."""
    info = PngInfo()
    if PNG_KEY in image.info:
        info.add_text(PNG_KEY, image.info[PNG_KEY])
    for key, value in (extra_text or {}).items():
        info.add_text(key, value)
    info.add_text("Software", f"ldmkit {__version__}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def png_base64(image: Image.Image, extra_text: dict[str, str] | None = None) -> str:
    return base64.b64encode(png_bytes(image, extra_text)).decode("ascii")


def preview_base64(x, side: int = 256) -> str:
    """A small PNG (base64) of one decoded image tensor (3, H, W) in [-1, 1]: the progress preview."""
    image = to_pil(x.float().clamp(-1, 1).cpu())
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")

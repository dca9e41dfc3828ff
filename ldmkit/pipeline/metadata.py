"""Generation parameters inside every PNG ldmkit writes, so that any image can be made again.

A generated PIL image carries its parameters as JSON in `image.info["ldmkit"]`; `save_png` writes
them as a PNG text chunk and `read_params` reads them back. They hold the checkpoint (path and
sha256), the seed and the batch it was drawn in, the sampler settings and the image's condition:
a class, a caption or a layout as is; a label map as an embedded PNG of its ids (so a semantic
sample regenerates from its own file); image inputs (a low-resolution image, an image and its
mask) as their size, plus the files and their sha256 where a command read them from files.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from ldmkit.device import dtype_name
from ldmkit.errors import DataError
from ldmkit.version import __version__

PNG_KEY = "ldmkit"
LABEL_MAP_KEY = "label_map_png"  # a label map condition, as a base64 PNG of its ids
log = logging.getLogger(__name__)


def image_metadata(pipe, params: dict, seeds: list[int], index: int, condition: Any, **extra: Any) -> str:
    """The JSON parameters of image `index` of a batch drawn with `seeds` by Pipeline `pipe`."""
    return json.dumps({"ldmkit_version": __version__, "checkpoint": pipe.source,
                       "checkpoint_sha256": file_sha256(pipe.source), "use_ema": pipe.use_ema,
                       "seed": seeds[index], "batch_seeds": seeds, "batch_index": index,
                       "condition": to_json(condition), **params, "device": pipe.device.type,
                       "dtype": dtype_name(pipe.dtype),
                       **{k: v for k, v in pipe.load_options.items() if v}, **extra})


def add_inputs(image: Image.Image, inputs: dict[str, str | None]) -> None:
    """Record the files an image was made from (paths and sha256) in its parameters."""
    params = json.loads(image.info[PNG_KEY])
    params["inputs"] = {**params.get("inputs", {}), **inputs}
    image.info[PNG_KEY] = json.dumps(params)


def input_files(paths: dict[str, str | None]) -> dict[str, str | None]:
    """{"name": path} -> {"name": absolute path, "name_sha256": digest} for the files given."""
    out: dict[str, str | None] = {}
    for name, path in paths.items():
        if path:
            out[name], out[f"{name}_sha256"] = str(Path(path).resolve()), file_sha256(path)
    return out


def recorded_input(params: dict, name: str) -> Path:
    """The input file `name` an image was made from, checked to be the same file (sha256) as then."""
    inputs = params.get("inputs", {})
    path = inputs.get(name)
    if not path:
        raise DataError(f"the PNG records no file for its {name.replace('_', ' ')} (made through the Python API?); "
                        "regenerate it with the same call")
    if not Path(path).is_file():
        raise DataError(f"the {name.replace('_', ' ')} this image was made from, {path}, is gone; put it back to "
                        "regenerate the image")
    if inputs.get(f"{name}_sha256") and file_sha256(path) != inputs[f"{name}_sha256"]:
        raise DataError(f"{path} has changed since this image was made from it (sha256 differs); the image cannot "
                        "be regenerated from it")
    return Path(path)


def to_json(value: Any) -> Any:
    """A condition item as JSON: label maps (2-D integer tensors) embedded, image tensors described."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, torch.Tensor):
        if value.dim() == 2 and not value.is_floating_point():
            return {LABEL_MAP_KEY: _label_map_png(value)}
        if value.dim() >= 2 and value.is_floating_point() and value.shape[-3:-2] in ((3,), (1,)):
            return f"<image {value.shape[-1]}x{value.shape[-2]}>"
        return value.tolist()
    if isinstance(value, Image.Image):
        return f"<image {value.width}x{value.height}>"
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_json(value: Any) -> Any:
    """The inverse of `to_json` where one exists: embedded label maps become (H, W) int64 tensors again."""
    if isinstance(value, dict):
        if set(value) == {LABEL_MAP_KEY}:
            with Image.open(io.BytesIO(base64.b64decode(value[LABEL_MAP_KEY]))) as img:
                return torch.from_numpy(np.asarray(img).astype(np.int64))
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def _label_map_png(ids: torch.Tensor) -> str:
    array = ids.cpu().numpy()
    mode, dtype = ("L", np.uint8) if array.max(initial=0) < 256 else ("I;16", np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(array.astype(dtype), mode=mode).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unchanged_file(path: str, sha256: str, what: str) -> str:
    """`path`, a file an image was made with, checked to be the same file (sha256) as then."""
    if file_sha256(path) != sha256:
        raise DataError(f"{what} {path} this image was made with is gone or has changed (sha256 differs); the image "
                        "cannot be regenerated without it")
    return path


def file_sha256(path: str | Path | None) -> str | None:
    """The sha256 of a file (cached while its size and mtime stay), None for anything that is not a file."""
    if not path or not Path(path).is_file():
        return None
    stat = Path(path).stat()
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def save_png(image: Image.Image, path: str | Path) -> None:
    """Write a generated image with its parameters as a PNG text chunk."""
    info = PngInfo()
    if PNG_KEY in image.info:
        info.add_text(PNG_KEY, image.info[PNG_KEY])
    info.add_text("Software", f"ldmkit {__version__}")
    image.save(path, pnginfo=info)


def read_params(path: str | Path) -> dict:
    """The generation parameters stored in a PNG written by `save_png`."""
    try:
        with Image.open(path) as img:
            text = getattr(img, "text", {}).get(PNG_KEY)
    except FileNotFoundError as err:
        raise DataError(f"{path} does not exist; give a PNG written by ldmkit sample, upscale or inpaint") from err
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot read {path} as an image ({err}); give a PNG written by ldmkit") from err
    if text is None:
        raise DataError(f"{path} carries no ldmkit generation parameters; give a PNG written by ldmkit sample, "
                        "upscale or inpaint (other tools and image editors drop them)")
    try:
        params = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: its ldmkit parameters are not valid JSON ({err}); was the file edited?") from err
    return params


def check_checkpoint(params: dict) -> None:
    """Warn when the checkpoint recorded in `params` has changed since the image was made."""
    recorded, now = params.get("checkpoint_sha256"), file_sha256(params.get("checkpoint"))
    if recorded and now and recorded != now:
        log.warning("the checkpoint %s has changed since this image was made (sha256 %s..., now %s...): the "
                    "regenerated image will differ", params["checkpoint"], recorded[:12], now[:12])

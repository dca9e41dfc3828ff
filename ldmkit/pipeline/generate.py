"""Sampling with a trained LDM: seeds -> start noise -> sampler -> latents -> decoded images.

`Pipeline` is the one object both the Python API (`ldmkit.load(path)(n=4, seed=0)`) and the CLI
use. Image i of a call has seed `seed + i`; its start noise and every per-step noise come from a
CPU generator seeded with it, so an image does not depend on the batch it was drawn in or on the
device. Each returned PIL image carries its generation parameters in `image.info["ldmkit"]`
(JSON), which `save_png` writes as a PNG text chunk and `read_params` reads back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import ldmkit
from ldmkit.data.images import to_pil
from ldmkit.diffusion.noise import randn_like_per_sample, seeded_generators
from ldmkit.errors import LdmkitError
from ldmkit.pipeline.fast import inference_parts
from ldmkit.pipeline.model import LatentDiffusion
from ldmkit.pipeline.tiling import decode_tiled
from ldmkit.progress import progress
from ldmkit.sampling import sample
from ldmkit.sampling.guidance import classifier_free_guidance, conditioned

PNG_KEY = "ldmkit"


class Pipeline:
    """A loaded LDM on a device, ready to sample: `pipe(n=..., steps=..., sampler=..., guidance=..., seed=...)`."""

    def __init__(self, model: LatentDiffusion, device: torch.device | str = "cpu", source: str = "",
                 use_ema: bool = True, decode_tile: int = 32, dtype: torch.dtype = torch.float32,
                 compile: bool = False):
        """`dtype` (e.g. torch.bfloat16) and `compile`: the fast inference path, see pipeline/fast.py;
        they convert `model`'s UNet and decoder in place (on CPU the decoder goes channels_last in
        float32 too). On CPU without `compile`, `model`'s 3x3 convolutions become WinogradConv2d
        (pipeline/winograd.py: same parameters, faster float32 inference)."""
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self._unet, self._decode = inference_parts(self.model, self.device, dtype, compile)
        self.source, self.use_ema, self.decode_tile = source, use_ema, decode_tile
        self._source_digest: str | None = None

    @property
    def config(self):
        return self.model.config

    @torch.no_grad()
    def latents(self, seeds: Sequence[int], condition: Any = None, steps: int = 50, sampler: str = "ddim",
                guidance: float = 1.0, eta: float | None = None, height: int | None = None,
                width: int | None = None, callback: Callable[[dict], None] | None = None,
                x_T: torch.Tensor | None = None) -> torch.Tensor:
        """Sampled latents (B, C, h, w) in the diffusion model's (scaled) space, one per seed.

        `x_T` replaces the start noise drawn from the seeds (e.g. a tile of a larger noise field);
        the seeds' generators still drive the per-step noise of stochastic samplers."""
        model = self.model
        shape = model.latent_shape(height or self.config.image_size, width or self.config.image_size)
        generators = seeded_generators(seeds)  # CPU: the same noise on every device
        if x_T is None:
            x_T = randn_like_per_sample((len(seeds), *shape), generators, self.device, torch.float32)
        elif tuple(x_T.shape) != (len(seeds), *shape):
            raise LdmkitError(f"x_T has shape {tuple(x_T.shape)}, expected {(len(seeds), *shape)}")
        x_T = x_T.to(self.device, torch.float32)
        cond = model.condition(condition, len(seeds), self.device)
        if cond and guidance != 1.0:
            unet = classifier_free_guidance(self._unet, cond, model.null_condition(len(seeds), self.device), guidance)
        else:
            unet = conditioned(self._unet, cond)
        options = {"prediction": self.config.diffusion.prediction, "callback": callback}
        if eta is not None:
            options["eta"] = eta
        return sample(sampler, unet, x_T, model.schedule, steps, generators, **options)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images (B, 3, H, W) in [-1, 1]; large latents are decoded in tiles."""
        return decode_tiled(self._decode, z, self.model.factor, tile=self.decode_tile).clamp(-1, 1)

    def __call__(self, n: int = 1, steps: int = 50, sampler: str = "ddim", guidance: float = 1.0, seed: int = 0,
                 eta: float | None = None, height: int | None = None, width: int | None = None,
                 condition: Any = None, batch_size: int = 8, show_progress: bool = False) -> list[Image.Image]:
        """`n` PIL images with seeds seed, seed + 1, ...; at most `batch_size` are sampled at once."""
        if n < 1 or batch_size < 1:
            raise LdmkitError(f"n and batch_size must be at least 1, got n={n}, batch_size={batch_size}")
        if isinstance(condition, torch.Tensor) and condition.ndim == 4 and condition.shape[0] > 1:
            condition = list(condition)  # a batch of image conditions: one per image
        conditions = condition if isinstance(condition, (list, tuple)) else [condition] * n
        if len(conditions) != n:
            raise LdmkitError(f"got {len(conditions)} conditions for n={n} images; give one or one per image")
        asked = self.model.conditioner.image_size(conditions[0]) if conditions[0] is not None else None
        default_h, default_w = asked or (self.config.image_size, self.config.image_size)
        params = {"steps": steps, "sampler": sampler, "guidance": guidance, "eta": eta, "height": height or
                  default_h, "width": width or default_w}
        images = []
        bar = progress(total=n, desc="sampling", unit="img", disable=not show_progress)
        for start in range(0, n, batch_size):
            seeds = [seed + i for i in range(start, min(n, start + batch_size))]
            batch_conditions = conditions[start:start + len(seeds)]
            raw = None if all(c is None for c in batch_conditions) else list(batch_conditions)
            def show_step(info: dict) -> None:
                bar.set_postfix(step=f"{info['i'] + 1}/{info['steps']}", refresh=False)

            z = self.latents(seeds, raw, steps, sampler, guidance, eta, params["height"], params["width"],
                             callback=show_step)
            for i, x in enumerate(self.decode(z)):
                image = to_pil(x)
                image.info[PNG_KEY] = json.dumps(self._metadata(params, seeds, i, batch_conditions[i]))
                images.append(image)
            bar.update(len(seeds))
        bar.close()
        return images

    def _metadata(self, params: dict, seeds: list[int], index: int, condition: Any) -> dict:
        if self._source_digest is None and self.source and Path(self.source).is_file():
            self._source_digest = _sha256(Path(self.source))
        return {"ldmkit_version": ldmkit.__version__, "checkpoint": self.source, "checkpoint_sha256":
                self._source_digest, "use_ema": self.use_ema, "seed": seeds[index], "batch_seeds": seeds,
                "batch_index": index, "condition": _json_safe(condition), **params, "device": self.device.type,
                "dtype": str(next(self.model.unet.parameters()).dtype).replace("torch.", "")}


def _json_safe(value: Any) -> Any:
    """A condition as JSON: image-like inputs (tensors, PIL images) become a short description."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        return f"<tensor {tuple(value.shape)}>"
    if isinstance(value, Image.Image):
        return f"<image {value.width}x{value.height}>"
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_png(image: Image.Image, path: str | Path) -> None:
    """Write a generated image with its parameters as a PNG text chunk."""
    info = PngInfo()
    if PNG_KEY in image.info:
        info.add_text(PNG_KEY, image.info[PNG_KEY])
    info.add_text("Software", f"ldmkit {ldmkit.__version__}")
    image.save(path, pnginfo=info)


def read_params(path: str | Path) -> dict:
    """The generation parameters stored in a PNG written by `save_png`."""
    with Image.open(path) as img:
        text = getattr(img, "text", {}).get(PNG_KEY)
    if text is None:
        raise LdmkitError(f"{path} carries no ldmkit generation parameters (was it written by `ldmkit sample`?)")
    return json.loads(text)

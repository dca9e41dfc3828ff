"""Inpainting with an `inpaint` LDM: fill the holes of an image, keep every other pixel exactly.

Mask convention: 1 (white in a mask PNG) = hole to fill, 0 (black) = keep; a mask is binarised at
0.5. The model sees the masked image image * (1 - mask) and the mask; its decoded output is then
composited into the original at full resolution, out = mask * generated + (1 - mask) * original,
so unmasked pixels are bit-exact copies of the input. Any size works in one pass: image and mask
are padded to the model's multiple (edge replication, padding marked "keep") and cropped back.
There is no tiling: very large inputs need memory in proportion to their area.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ldmkit.data.images import flatten_to_rgb, to_tensor, to_uint8
from ldmkit.errors import ConfigError, ShapeError
from ldmkit.pipeline.conditions import (
    check_mask_not_empty,
    check_mask_size,
    image_tensor,
    mask_tensor,
    model_name,
)
from ldmkit.pipeline.generate import Pipeline
from ldmkit.pipeline.metadata import PNG_KEY, image_metadata
from ldmkit.pipeline.model import LatentDiffusion
from ldmkit.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS
from ldmkit.sampling.img2img import check_strength


def check_inpainting_model(model: LatentDiffusion) -> None:
    kind = model.config.conditioning.kind
    if kind != "inpaint":
        raise ConfigError(f"this is {model_name(model.config.conditioning)}; inpainting needs an inpainting model "
                          "(conditioning.kind: inpaint), e.g. one trained with configs/ldm/inpaint-emoji64.yaml, or "
                          "fill with any model: ldmkit sample MODEL --init-image IMAGE --mask MASK")


@torch.no_grad()
def inpaint_tensor(pipe: Pipeline, images: torch.Tensor, masks: torch.Tensor, steps: int = DEFAULT_STEPS,
                   sampler: str = DEFAULT_SAMPLER, seed: int = 0, guidance: float = 1.0,
                   eta: float | None = None, callback: Callable[[dict], None] | None = None,
                   strength: float | None = None) -> torch.Tensor:
    """images (B, 3, H, W) in [-1, 1], masks (B, 1, H, W) (1 = hole) -> (B, 3, H, W) composited.

    Image i uses seed + i; outside its (binarised) mask it equals the input exactly. `strength` in
    [0, 1]: start from the images themselves noised that far (img2img, sampling/img2img.py) instead of
    from pure noise, so the holes keep some of what they hold. `callback(info)` gets every step's
    report (sampling/progress.py)."""
    check_inpainting_model(pipe.model)
    if strength is not None:
        check_strength(strength)
    images = torch.stack([image_tensor(x, "inpainting image") for x in (images if images.dim() == 4 else [images])])
    masks = torch.stack([mask_tensor(m) for m in (masks if masks.dim() == 4 else [masks])])  # (B, 1, H, W) in {0, 1}
    for i, m in enumerate(masks):
        check_mask_not_empty(m, "the mask" if masks.shape[0] == 1 else f"mask {i}")
    if images.shape[0] != masks.shape[0] or images.shape[-2:] != masks.shape[-2:]:
        raise ShapeError(f"got masks {tuple(masks.shape)} for images {tuple(images.shape)}; give one mask of each "
                         "image's size")
    images, masks = images.to(pipe.device), masks.to(pipe.device)
    h, w = images.shape[-2:]
    m = pipe.model.factor * pipe.model.config.unet.size_multiple
    height, width = math.ceil(h / m) * m, math.ceil(w / m) * m
    if height < pipe.model.minimum_size and width < pipe.model.minimum_size:  # padded to what the UNet takes
        height = pipe.model.minimum_size
    pad = (0, width - w, 0, height - h)
    condition = {"image": F.pad(images, pad, mode="replicate"), "mask": F.pad(masks, pad, value=0.0)}
    seeds = [seed + i for i in range(images.shape[0])]
    init = None if strength is None else pipe.encode(condition["image"])  # (B, C, h, w)
    z = pipe.latents(seeds, condition, steps, sampler, guidance, eta, height, width, callback=callback, init=init,
                     strength=strength)
    generated = pipe.decode(z)[:, :, :h, :w].float().clamp(-1, 1)  # (B, 3, H, W)
    return torch.where(masks.bool(), generated, images)


def inpaint(pipe: Pipeline, image: Image.Image, mask: Image.Image, steps: int = DEFAULT_STEPS,
            sampler: str = DEFAULT_SAMPLER,
            seed: int = 0, guidance: float = 1.0, eta: float | None = None, inputs: dict | None = None,
            callback: Callable[[dict], None] | None = None, strength: float | None = None) -> Image.Image:
    """Fill the white part of `mask` in `image`; every other pixel of the (RGB) image is kept bit-exactly.
    `strength`: start from the image noised that far instead of from noise (see `inpaint_tensor`).

    Transparency in the image is flattened onto white first, as everywhere in ldmkit. The result carries
    its generation parameters (pipeline/metadata.py; `inputs` describes where the inputs came from)."""
    rgb = flatten_to_rgb(image)
    check_mask_size(mask.size, rgb.size)
    original = np.asarray(rgb)  # (H, W, 3) uint8
    hole = mask_tensor(mask)[None]  # (1, 1, H, W) in {0, 1}
    filled = inpaint_tensor(pipe, to_tensor(rgb)[None], hole, steps, sampler, seed, guidance, eta, callback, strength)
    keep = ~hole[0, 0].bool().numpy()[..., None]  # (H, W, 1)
    out = Image.fromarray(np.where(keep, original, to_uint8(filled[0])))
    params = pipe.recorded({"steps": steps, "sampler": sampler, "guidance": guidance, "eta": eta,
                            "height": out.height, "width": out.width})
    if strength is not None:
        params["strength"] = strength
    condition = {"image": to_tensor(rgb), "mask": hole[0]}
    out.info[PNG_KEY] = image_metadata(pipe, params, [seed], 0, condition, task="inpaint", inputs=inputs or {})
    return out

"""Init images for img2img (SDEdit) and masks for inpainting by blending, with any model.

An init image is encoded by the first stage (the posterior mode) and the sampler starts part-way
from it (`strength`, ldmkit/sampling/img2img.py). With a mask (white / 1 = fill), the known latent
is blended back before every model call (ldmkit/sampling/blend.py) and, after decoding, every
pixel outside the mask is copied from the init image, bit-exactly as `ldmkit inpaint` does.
Inpainting models take their image and mask as the condition instead (`ldmkit inpaint`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ldmkit.errors import ConfigError
from ldmkit.pipeline.conditions import check_mask_size, image_tensor, mask_tensor
from ldmkit.sampling.img2img import check_strength

DEFAULT_STRENGTH = 0.75  # A1111's default denoising strength


def init_items(model, init_image: Any, strength: float | None, mask: Any, n: int) -> list[dict | None]:
    """n per-image {"image": (3, H, W), "mask": (1, H, W) or None}, or n Nones; every option checked."""
    if init_image is None:
        if strength is not None or mask is not None:
            raise ConfigError(f"{'strength' if strength is not None else 'a mask'} needs an init image: give "
                              "init_image (--init-image)")
        return [None] * n
    if strength is not None:
        check_strength(strength)
    if mask is not None and "inpaint" in model.config.conditioning.kinds:
        raise ConfigError("this is an inpainting model: give the image and the mask as its condition "
                          "(`ldmkit inpaint IMAGE MASK`, or condition={'image': ..., 'mask': ...})")
    images = _per_image(init_image, n, "init image")
    masks = _per_image(mask, n, "mask") if mask is not None else [None] * n
    items = []
    for image, m in zip(images, masks):
        image = image_tensor(image, "init image")
        m = None if m is None else mask_tensor(m)
        if m is not None:
            check_mask_size(m.shape[:0:-1], image.shape[:0:-1], image_what="the init image")
        items.append({"image": image, "mask": m})
    return items


def _per_image(value: Any, n: int, what: str) -> list[Any]:
    if isinstance(value, torch.Tensor) and value.dim() == 4:
        value = list(value)
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ConfigError(f"got {len(values)} {what}s for {n} images; give one, or one per image")
    return values


def size(item: dict | None) -> tuple[int, int] | None:
    """The (H, W) an init image sets for its sample."""
    return None if item is None else tuple(item["image"].shape[-2:])


def latents(pipe, batch: list[dict | None]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The batch's init latents (B, C, h, w) and masks at the latent's size (B, 1, h, w) (a latent pixel
    is to fill if any of its pixels is), or None."""
    if batch[0] is None:
        return None, None
    z = pipe.encode(torch.stack([item["image"] for item in batch]))
    if batch[0]["mask"] is None:
        return z, None
    masks = torch.stack([item["mask"] for item in batch]).to(z)  # (B, 1, H, W)
    return z, F.adaptive_max_pool2d(masks, z.shape[-2:])


def composite(images: torch.Tensor, batch: list[dict | None]) -> torch.Tensor:
    """Decoded images (B, 3, H, W) with every pixel outside a mask copied from the init image."""
    if batch[0] is None or batch[0]["mask"] is None:
        return images
    init = torch.stack([item["image"] for item in batch]).to(images)
    masks = torch.stack([item["mask"] for item in batch]).to(images)
    return torch.where(masks.bool(), images, init)


def describe(item: dict | None) -> dict:
    """What the PNG metadata records of an init image and its mask (the CLI adds their files)."""
    if item is None:
        return {}
    image = item["image"]
    out = {"init_image": f"<image {image.shape[-1]}x{image.shape[-2]}>"}
    if item["mask"] is not None:
        out["mask"] = f"<image {image.shape[-1]}x{image.shape[-2]}>"
    return out

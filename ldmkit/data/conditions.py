"""The condition of a data batch, in the tensor form the model's conditioner takes.

Training and `ldmkit eval --condition-from-data` read each sample's condition from its batch:
labels, captions, boxes or label maps as the dataset gives them, and, for the tasks whose
condition is computed from the image itself, a degraded low-resolution copy (super-resolution:
bicubic or the BSR mix, `degradations.py`) or a random large mask (inpainting, `masks.py`) drawn
from each sample's own generator, so a run stays exactly reproducible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ldmkit.data.degradations import degrade
from ldmkit.data.masks import large_masks
from ldmkit.errors import DataError

if TYPE_CHECKING:
    from ldmkit.conditioning.config import ConditioningConfig

# the batch fields each kind of condition reads
BATCH_KEYS = {"none": (), "class": ("label",), "text": ("caption",), "layout": ("boxes", "box_labels"),
              "semantic": ("label_map",), "low_res": ("image",), "inpaint": ("image",)}
FROM_IMAGES = ("low_res", "inpaint")  # conditions computed from the training image itself


def batch_keys(cfg: ConditioningConfig) -> tuple[str, ...]:
    return tuple(key for kind in cfg.kinds for key in BATCH_KEYS[kind])


def needs_images(cfg: ConditioningConfig) -> bool:
    """Whether the condition is computed from the images (so a latent cache must keep them)."""
    return any(kind in FROM_IMAGES for kind in cfg.kinds)


def batch_condition(cfg: ConditioningConfig, batch: dict, generators: list[torch.Generator]) -> Any:
    """The condition of a training batch (None for unconditional models); `generators` (one per
    sample) drive the random degradations and masks."""
    missing = [key for key in batch_keys(cfg) if key not in batch]
    if missing:
        raise DataError(f"the training batch has no {', '.join(missing)} (it has {', '.join(sorted(batch))}), which "
                        f"a '{cfg.kind}' model reads: pick a dataset that provides it (e.g. boxes and label maps: "
                        "data.dataset scenes); the latent cache keeps only latents, labels, captions and images, "
                        "so set latent_cache: false for other fields")
    parts = {kind: _one(kind, cfg, batch, generators) for kind in cfg.kinds}
    if not parts:
        return None
    return parts if cfg.hybrid != "none" else parts[cfg.kind]


def _one(kind: str, cfg: ConditioningConfig, batch: dict, generators: list[torch.Generator]) -> Any:
    if kind == "class":
        return torch.as_tensor(batch["label"]).long()
    if kind == "text":
        return list(batch["caption"])
    if kind == "layout":
        return {"boxes": batch["boxes"], "labels": batch["box_labels"]}
    if kind == "semantic":
        return batch["label_map"]
    images = batch["image"]
    if kind == "low_res":
        return degrade(images, cfg.low_res.factor, cfg.low_res.degradation, generators)
    return {"image": images, "mask": large_masks(*images.shape[-2:], generators, cfg.inpaint.masks)}

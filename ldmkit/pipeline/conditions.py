"""A user's condition -> the tensors the model's conditioner takes (see ldmkit/conditioning/base.py).

Sampling takes one condition for every image, or a list with one per image. Each image's own
condition ("item") is, by kind:
    class     an int, a class name (or a unique prefix of one), or None (the unconditional class)
    text      a caption (str), or None (the empty caption)
    layout    {"boxes": [[x0, y0, x1, y1], ...] normalised, "labels": [class, ...]}, or None (no boxes)
    semantic  an (H, W) map of class ids: a tensor, an array, or a single-channel PIL image
    low_res   the low-resolution image: a PIL image or a (3, h, w) tensor in [-1, 1]
    inpaint   {"image": a PIL image or (3, H, W) tensor, "mask": a PIL image or (1, H, W) / (H, W)
              tensor, white / 1 = fill}
    hybrid    {kind: that kind's item, ...}
A batched tensor ((B,) labels, (B, H, W) maps, (B, 3, h, w) images) is split into items. `items`
checks and splits, `tensors` stacks a batch of items, `image_size` reads the size an item asks for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from ldmkit.conditioning.config import ConditioningConfig
from ldmkit.conditioning.layout import PAD_LABEL
from ldmkit.conditioning.text import NULL_CAPTION
from ldmkit.data.images import flatten_to_rgb, to_tensor
from ldmkit.data.label_maps import label_map_ids
from ldmkit.errors import ConfigError, DataError, ShapeError

WHAT = {"class": "a class index or name (--class)", "text": "a caption (--prompt)",
        "layout": "a layout of boxes (--layout)", "semantic": "a label map (--label-map)",
        "low_res": "a low-resolution image (ldmkit upscale)", "inpaint": "an image and a mask (ldmkit inpaint)"}
REQUIRED = ("semantic", "low_res", "inpaint")  # kinds without an unconditional sample


def accepts(cfg: ConditioningConfig) -> str:
    """What a model of this conditioning takes, for error messages."""
    if not cfg.kinds:
        return "no condition (an unconditional model)"
    return " and ".join(WHAT[kind] for kind in cfg.kinds)


def model_name(cfg: ConditioningConfig) -> str:
    """"a 'class' model", "an unconditional model": a model of this conditioning, for error messages."""
    return f"a '{cfg.kind}' model" if cfg.kinds else "an unconditional model"


def check_kinds(cfg: ConditioningConfig, given: dict[str, str]) -> None:
    """`given`: option name -> the kind of model it is for; an option for another kind is an error."""
    for name, kind in given.items():
        if kind not in cfg.kinds:
            raise ConfigError(f"{name} is for {kind} models, but this is {model_name(cfg)}: it takes {accepts(cfg)}; "
                              f"drop {name}")


def items(cfg: ConditioningConfig, raw: Any, n: int) -> list[Any]:
    """`n` per-image conditions from one condition or one per image, each checked (None: unconditional)."""
    if not cfg.kinds:
        if raw is not None and not (isinstance(raw, (list, tuple)) and all(r is None for r in raw)):
            raise ConfigError(f"this is an unconditional model: it takes {accepts(cfg)}, got a condition; drop it")
        return [None] * n
    if isinstance(raw, torch.Tensor) and _batched(cfg.kind, raw):
        raw = list(raw)
    values = list(raw) if isinstance(raw, (list, tuple)) else [raw] * n
    if len(values) != n:
        raise ConfigError(f"got {len(values)} conditions for {n} images; give one, or one per image")
    return [_item(cfg, value) for value in values]


def _batched(kind: str, x: torch.Tensor) -> bool:
    return x.dim() == {"class": 1, "semantic": 3, "low_res": 4}.get(kind, -1)


def _item(cfg: ConditioningConfig, value: Any) -> Any:
    if cfg.hybrid == "none":
        return _checked(cfg.kind, cfg, value)
    if not isinstance(value, Mapping) or set(value) != set(cfg.kinds):
        raise DataError(f"this model reads two conditions at once: give a dict with keys {', '.join(cfg.kinds)}, "
                        f"got {type(value).__name__}")
    return {kind: _checked(kind, cfg, value[kind]) for kind in cfg.kinds}


def _checked(kind: str, cfg: ConditioningConfig, value: Any) -> Any:
    """One image's condition of one kind, in a checked, JSON-friendly or tensor form."""
    if value is None:
        if kind in REQUIRED:
            raise ConfigError(f"this '{kind}' model needs {WHAT[kind]} for every image; none was given")
        return None
    if kind == "class":
        return class_index(cfg, value)
    if kind == "text":
        if not isinstance(value, str):
            raise DataError(f"a caption must be a str, got {type(value).__name__} {value!r}")
        return value
    if kind == "layout":
        return _layout(value)
    if kind == "semantic":
        return _label_map(value)
    if kind == "low_res":
        return image_tensor(value, "low-resolution image")
    if not isinstance(value, Mapping) or not {"image", "mask"} <= set(value):
        raise DataError('the inpainting condition is {"image": image, "mask": mask} (mask: 1 or white = fill), '
                        f"got {type(value).__name__}")
    image, mask = image_tensor(value["image"], "inpainting image"), mask_tensor(value["mask"])
    check_mask_size(mask.shape[:0:-1], image.shape[:0:-1], "the inpainting mask")
    return {"image": image, "mask": mask}


def check_mask_size(mask: tuple[int, int], image: tuple[int, int], what: str = "the mask",
                    image_what: str = "the image") -> None:
    """A clear error when a mask's (W, H) differs from its image's."""
    if tuple(mask) != tuple(image):
        raise ShapeError(f"{what} is {mask[0]}x{mask[1]} px but {image_what} {image[0]}x{image[1]}; give a mask of "
                         "the image's size (white = fill)")


def check_mask_not_empty(mask: Any, what: str = "the mask") -> None:
    """A clear error for a mask with nothing to fill (no pixel white, >= 50 % grey)."""
    if not mask_tensor(mask).any():
        raise DataError(f"{what} is empty (all black): nothing to inpaint; white (>= 50 % grey) marks the part to "
                        "fill, black the part to keep")


def class_index(cfg: ConditioningConfig, value: Any) -> int:
    """A class index from an index, a class name or a unique prefix of one, range-checked."""
    section, names = cfg.class_label, cfg.class_label.names
    known = ", ".join(f"{i}: {name}" for i, name in enumerate(names)) or f"0 .. {section.num_classes - 1}"
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value)
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value.strip()):
        exact = [i for i, name in enumerate(names) if name.lower() == value.lower()]
        matches = exact or [i for i, name in enumerate(names) if name.lower().startswith(value.lower())]
        if len(matches) != 1:
            raise DataError(f"class {value!r} is {'ambiguous' if matches else 'unknown'}; classes: {known}")
        return matches[0]
    if isinstance(value, str):
        value = int(value)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise DataError(f"a class is an index or a name, got {type(value).__name__} {value!r}")
    if not 0 <= int(value) < section.num_classes:
        raise DataError(f"class {int(value)} does not exist; classes: {known}")
    return int(value)


def _layout(value: Any) -> dict[str, torch.Tensor]:
    if not isinstance(value, Mapping) or not {"boxes", "labels"} <= set(value):
        raise DataError(f"a layout is a dict {{'boxes': [[x0, y0, x1, y1], ...], 'labels': [class, ...]}} with "
                        f"normalised corners, got {type(value).__name__}")
    try:
        boxes = torch.as_tensor(value["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(value["labels"]).reshape(-1)
        if labels.numel() == 0:
            labels = labels.long()  # an empty layout (no boxes): the null layout
    except (TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"a layout's boxes must be [x0, y0, x1, y1] numbers and its labels integers: {err}") from err
    if labels.shape[0] != boxes.shape[0]:
        raise ShapeError(f"a layout has {boxes.shape[0]} boxes but {labels.shape[0]} labels; give one label per box")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise DataError(f"box labels must be integer class indices, got {labels.tolist()}")
    return {"boxes": boxes, "labels": labels.long()}


def _label_map(value: Any) -> torch.Tensor:
    ids = label_map_ids(value) if isinstance(value, Image.Image) else torch.as_tensor(np.asarray(value))
    if ids.dim() == 3 and ids.shape[0] == 1:
        ids = ids[0]
    if ids.dim() != 2:
        raise ShapeError(f"a label map is (H, W) class ids, got shape {tuple(ids.shape)}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise DataError(f"a label map holds integer class ids, got {ids.dtype}")
    return ids.long()


def image_tensor(value: Any, what: str) -> torch.Tensor:
    """(3, H, W) float32 in [-1, 1] from a PIL image (transparency flattened onto white) or a tensor."""
    if isinstance(value, Image.Image):
        return to_tensor(flatten_to_rgb(value))
    if not isinstance(value, torch.Tensor):
        raise DataError(f"the {what} must be a PIL image or a (3, H, W) tensor, got {type(value).__name__}")
    x = value[0] if value.dim() == 4 and value.shape[0] == 1 else value
    if x.dim() != 3 or x.shape[0] != 3:
        raise ShapeError(f"the {what} must be (3, H, W), got {tuple(value.shape)}")
    return x.float()


def mask_tensor(value: Any) -> torch.Tensor:
    """(1, H, W) float32 in {0, 1} (1 = fill) from a PIL image (white = fill) or a tensor, binarised at 0.5."""
    if isinstance(value, Image.Image):
        if value.mode in ("RGBA", "LA", "PA") or (value.mode == "P" and "transparency" in value.info):
            value = flatten_to_rgb(value)  # transparency counts as white, like images elsewhere
        m = torch.from_numpy(np.array(value.convert("L"))).float().div(255)[None]  # (1, H, W)
    elif isinstance(value, torch.Tensor):
        m = value.float()
        m = m[None] if m.dim() == 2 else m[0] if m.dim() == 4 and m.shape[0] == 1 else m
        if m.dim() != 3 or m.shape[0] != 1:
            raise ShapeError(f"the inpainting mask must be (H, W) or (1, H, W), got {tuple(value.shape)}")
    else:
        raise DataError(f"the inpainting mask must be a PIL image or a tensor, got {type(value).__name__}")
    return (m >= 0.5).float()


def image_size(cfg: ConditioningConfig, item: Any) -> tuple[int, int] | None:
    """The (H, W) in pixels of the image an item asks for (a label map's size, 4x a low-res image, ...);
    None: any size."""
    if cfg.hybrid != "none":
        sizes = [image_size(replace(cfg, kind=kind, hybrid="none"), item[kind]) for kind in cfg.kinds]
        return next((s for s in sizes if s is not None), None)
    if cfg.kind == "semantic":
        return tuple(item.shape)
    if cfg.kind == "low_res":
        return item.shape[-2] * cfg.low_res.factor, item.shape[-1] * cfg.low_res.factor
    if cfg.kind == "inpaint":
        return tuple(item["image"].shape[-2:])
    return None


def tensors(cfg: ConditioningConfig, batch: list[Any]) -> Any:
    """A batch of checked items -> the conditioner's tensor form (on the CPU); None for unconditional models."""
    if not cfg.kinds:
        return None
    if cfg.hybrid != "none":
        return {kind: _stack(kind, cfg, [item[kind] for item in batch]) for kind in cfg.kinds}
    return _stack(cfg.kind, cfg, batch)


def _stack(kind: str, cfg: ConditioningConfig, batch: list[Any]) -> Any:
    if kind == "class":
        return torch.tensor([cfg.class_label.null_label if c is None else c for c in batch], dtype=torch.int64)
    if kind == "text":
        return [NULL_CAPTION if c is None else c for c in batch]
    if kind == "layout":
        m = max([0] + [len(c["labels"]) for c in batch if c is not None])
        boxes, labels = torch.zeros(len(batch), m, 4), torch.full((len(batch), m), PAD_LABEL, dtype=torch.int64)
        for i, c in enumerate(batch):
            if c is not None:
                boxes[i, :len(c["labels"])], labels[i, :len(c["labels"])] = c["boxes"], c["labels"]
        return {"boxes": boxes, "labels": labels}
    if kind == "inpaint":
        return {"image": _same_size([c["image"] for c in batch], "inpainting image"),
                "mask": _same_size([c["mask"] for c in batch], "inpainting mask")}
    return _same_size(batch, "label map" if kind == "semantic" else "low-resolution image")


def _same_size(parts: list[torch.Tensor], what: str) -> torch.Tensor:
    sizes = sorted({tuple(p.shape[-2:]) for p in parts})
    if len(sizes) != 1:
        raise ShapeError(f"all {what}s sampled together must have one size, got {sizes}; sample them separately")
    return torch.stack(parts)

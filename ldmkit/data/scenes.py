"""Emoji scenes: 1-4 OpenMoji emoji on a white canvas, with their boxes and a per-pixel label map.

The embedded data for layout-to-image and semantic synthesis (the paper's Sec. 4.3). Scene i of a
split is drawn from its own generator (seeded by the dataset seed, the split and i), so it is the
same on every machine and in every epoch; it is rendered on the fly from the cached OpenMoji
renders (`openmoji.rendered`, at the scene's resolution, 32 px at least) and their alpha masks.

How a scene is drawn:
- 1 to 4 objects. Each picks a class uniformly among the 10 coarse `CLASS_NAMES`, then an emoji of
  that class (uniform classes: "people" alone holds half of all emoji), from the emoji of the
  same split, so validation scenes show unseen emoji. Emoji too thin to leave any pixel at the
  smallest slot size (~0.5 %: arrows, snowflake, ...) are left out.
- Its square slot has a side of 30-60 % of the canvas and a uniform position; a slot overlapping
  an earlier one by more than a quarter of the smaller slot's area is redrawn (up to 20 tries,
  then the scene keeps fewer objects).
- The emoji is resized into its slot and composited over the canvas in drawing order.
- Its box is the extent of its own alpha mask (alpha >= 0.5), not of the slot, and counts the
  whole emoji, also where a later one covers it. The label map holds c + 1 for class c where
  that mask is set, later emoji on top, and 0 (background) elsewhere.

All emojis designed by OpenMoji (https://openmoji.org), licensed CC BY-SA 4.0: scenes made from
them, and models trained on those, are adaptations to share under the same licence and credit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ldmkit import paths
from ldmkit.data.boxes import flip_boxes, pad_boxes
from ldmkit.data.images import uint8_to_tensor
from ldmkit.data.openmoji import CLASS_NAMES, MAX_RESOLUTION, MIN_RESOLUTION, records, rendered
from ldmkit.data.transforms import derive_seed, draw_flip, sample_generator
from ldmkit.errors import DataError

SCENES_PER_SPLIT = {"train": 5000, "val": 500}
MIN_OBJECTS, MAX_OBJECTS = 1, 4
SLOT_SIDE = (0.3, 0.6)  # slot side as a fraction of the canvas side
MAX_OVERLAP = 0.25  # intersection / area of the smaller slot, between any two slots
PLACEMENT_TRIES = 20
MASK_THRESHOLD = 0.5  # alpha at or above this belongs to the emoji (label map and box)
_SPLIT_STREAM = {"train": 100, "val": 101}


@dataclass(frozen=True)
class SceneObject:
    emoji: int  # row of the emoji in `openmoji.records()`
    label: int  # index into CLASS_NAMES
    left: int  # slot position and side, pixels
    top: int
    side: int


class EmojiScenes(Dataset):
    """{"image": (3,R,R) in [-1,1], "boxes": (max_boxes,4), "box_labels": (max_boxes,), "label_map": (R,R),
    "caption": str, "label": int, "index": int} for scenes of OpenMoji emoji.

    `count` scenes per split (default 5,000 train, 500 val; "all" is train then val). `label` is
    the class of the largest emoji; the caption names the emoji in drawing order. Keys are an
    index or `(index, seed)` from `EpochSampler`; the seed drives the random flip, which mirrors
    the image, boxes and label map together.
    """

    def __init__(self, resolution: int = 64, split: str = "train", count: int | None = None, max_boxes: int = 8,
                 flip: bool = False, seed: int = 0, cache_dir: str | None = None):
        if split not in ("train", "val", "all"):
            raise DataError(f"scene split must be 'train', 'val' or 'all', got {split!r}")
        if max_boxes < MAX_OBJECTS:
            raise DataError(f"scenes hold up to {MAX_OBJECTS} emoji; max_boxes must be at least that, "
                            f"got {max_boxes}")
        splits = ("train", "val") if split == "all" else (split,)
        counts = {s: SCENES_PER_SPLIT[s] if count is None else count for s in splits}
        self.scenes = [(s, i) for s in splits for i in range(counts[s])]  # (split, scene index in it)
        self.resolution, self.max_boxes, self.flip, self.seed = resolution, max_boxes, flip, seed
        if resolution < 8:
            raise DataError(f"scenes need a resolution of at least 8 px, got {resolution}")
        self.records = records()
        source = min(max(resolution, MIN_RESOLUTION), MAX_RESOLUTION)  # emoji renders, resized into their slots
        self._rgb, self._alpha = rendered(source, paths.cache_dir(cache_dir))  # (N, S, S, 3), (N, S, S) uint8
        usable = self._visible_at_smallest_size()
        self.pools = {s: [[j for j, r in enumerate(self.records) if r.split == s and r.label == c and usable[j]]
                          for c in range(len(CLASS_NAMES))] for s in splits}  # split -> class -> emoji rows
        self.class_names = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.scenes)

    def _visible_at_smallest_size(self) -> list[bool]:
        side = self._side(0.0)
        alpha = torch.from_numpy(np.array(self._alpha)).float().div(255)[:, None]  # (N, 1, S, S)
        small = F.interpolate(alpha, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        return (small >= MASK_THRESHOLD).flatten(1).any(1).tolist()

    def _side(self, u: float) -> int:
        """Slot side in pixels for u in [0, 1)."""
        low, high = SLOT_SIDE
        return max(4, round(self.resolution * (low + (high - low) * u)))

    def layout(self, index: int) -> list[SceneObject]:
        """The objects of scene `index`, in drawing order (a function of the index and seed only)."""
        split, i = self.scenes[index]
        g = torch.Generator().manual_seed(derive_seed(self.seed * 1_000_003 + i, _SPLIT_STREAM[split]))
        classes = [c for c, pool in enumerate(self.pools[split]) if pool]
        r = self.resolution
        objects: list[SceneObject] = []
        for _ in range(int(torch.randint(MIN_OBJECTS, MAX_OBJECTS + 1, (1,), generator=g))):
            label = classes[int(torch.randint(len(classes), (1,), generator=g))]
            pool = self.pools[split][label]
            emoji = pool[int(torch.randint(len(pool), (1,), generator=g))]
            for _ in range(PLACEMENT_TRIES):
                side = self._side(float(torch.rand((), generator=g)))
                left = int(torch.randint(r - side + 1, (1,), generator=g))
                top = int(torch.randint(r - side + 1, (1,), generator=g))
                slot = SceneObject(emoji, label, left, top, side)
                if all(_overlap(slot, other) <= MAX_OVERLAP for other in objects):
                    objects.append(slot)
                    break
        return objects

    def render(self, index: int) -> tuple[torch.Tensor, list[SceneObject], list[torch.Tensor]]:
        """Image (3, R, R) in [-1, 1], the objects drawn, and each one's alpha mask (R, R) in [0, 1]."""
        r = self.resolution
        canvas = torch.ones(3, r, r)  # white
        drawn, masks = [], []
        for obj in self.layout(index):
            rgb = uint8_to_tensor(self._rgb[obj.emoji])  # (3, S, S) over white
            alpha = torch.from_numpy(np.array(self._alpha[obj.emoji])).float().div(255)[None]  # (1, S, S)
            small = F.interpolate(torch.cat([rgb, alpha])[None], size=(obj.side, obj.side), mode="bilinear",
                                  antialias=True, align_corners=False)[0].clamp(-1, 1)  # (4, side, side)
            mask = torch.zeros(r, r)
            ys, xs = slice(obj.top, obj.top + obj.side), slice(obj.left, obj.left + obj.side)
            mask[ys, xs] = small[3].clamp(0, 1)
            if not (mask >= MASK_THRESHOLD).any():
                continue  # too thin to show at this size
            # rgb is composited over white, so rgb + (1 - a) (canvas - white) composites it over the canvas
            canvas[:, ys, xs] = small[:3] + (1 - mask[ys, xs]) * (canvas[:, ys, xs] - 1)
            drawn.append(obj)
            masks.append(mask)
        return canvas, drawn, masks

    def __getitem__(self, key: int | tuple[int, int | None]) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, objects, masks = self.render(index)
        labels = [obj.label for obj in objects]
        label_map = torch.zeros(self.resolution, self.resolution, dtype=torch.int64)
        for mask, label in zip(masks, labels):
            label_map[mask >= MASK_THRESHOLD] = label + 1
        boxes = torch.stack([mask_box(m) for m in masks])  # (n, 4)
        if self.flip and draw_flip(sample_generator(seed)):
            image, label_map, boxes = image.flip(-1), label_map.flip(-1), flip_boxes(boxes)
        areas = [int((m >= MASK_THRESHOLD).sum()) for m in masks]
        padded_boxes, box_labels = pad_boxes(boxes, torch.tensor(labels), self.max_boxes)
        caption = _join([self.records[obj.emoji].caption for obj in objects])
        return {"image": image, "boxes": padded_boxes, "box_labels": box_labels, "label_map": label_map,
                "caption": caption, "label": labels[areas.index(max(areas))], "index": index}


def mask_box(mask: torch.Tensor) -> torch.Tensor:
    """Normalised extent (4,) x0, y0, x1, y1 of the pixels of a mask (H, W) at or above MASK_THRESHOLD."""
    h, w = mask.shape
    rows = torch.nonzero((mask >= MASK_THRESHOLD).any(1)).flatten()
    cols = torch.nonzero((mask >= MASK_THRESHOLD).any(0)).flatten()
    return torch.tensor([cols[0] / w, rows[0] / h, (cols[-1] + 1) / w, (rows[-1] + 1) / h], dtype=torch.float32)


def _overlap(a: SceneObject, b: SceneObject) -> float:
    """Intersection of two slots over the area of the smaller one."""
    dx = min(a.left + a.side, b.left + b.side) - max(a.left, b.left)
    dy = min(a.top + a.side, b.top + b.side) - max(a.top, b.top)
    return max(dx, 0) * max(dy, 0) / min(a.side, b.side) ** 2


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

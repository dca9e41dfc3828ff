"""Users' semantic maps: an image folder paired with a folder of label-map PNGs (`data.label_maps`).

Pairing: the image `data.path/<rel>/<name>.<ext>` goes with `data.label_maps/<rel>/<name>.png`
(same relative path, suffix .png). A label map is a single-channel PNG whose pixel values are the
class ids, 0 .. conditioning.semantic.num_classes - 1 (by convention 0 is background): mode L
(8-bit grey), P (palette: the palette index is the class) or I / I;16 (16-bit). It must have the
image's size; it follows the image through the resize (nearest neighbour, so ids never blend),
the crop and the flip. Every image of the folder needs its map.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ldmkit.data.folder import ImageFolderDataset
from ldmkit.data.images import load_rgb, read_image, to_tensor
from ldmkit.data.transforms import Crop, apply_window, crop_window, draw_flip, sample_generator
from ldmkit.errors import DataError

log = logging.getLogger(__name__)
LABEL_MODES = ("L", "P", "I", "I;16")


def label_map_ids(img: Image.Image, name: str = "label map") -> torch.Tensor:
    """A single-channel PIL image -> (H, W) int64 class ids (its pixel values; palette indices for P)."""
    if img.mode not in LABEL_MODES:
        raise DataError(f"{name} has mode {img.mode}; it must be single-channel (L, P or I) with class ids as "
                        f"pixel values, not colours")
    return torch.from_numpy(np.asarray(img).astype(np.int64))


def read_label_map(path: str | Path) -> torch.Tensor:
    """A label-map PNG -> (H, W) int64 class ids (its pixel values)."""
    what = f"label map {path}"
    return read_image(Path(path), what, lambda img: label_map_ids(img, what))


def crop_label_map(label_map: torch.Tensor, window: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """(H, W) ids through `crop_window`'s window: resized (nearest) to (new_h, new_w), then cropped."""
    new_w, new_h, left, top = window
    resized = torch.nn.functional.interpolate(label_map[None, None].float(), size=(new_h, new_w),
                                              mode="nearest-exact")[0, 0].long()
    return resized[top:top + size, left:left + size]


class LabelMapFolderDataset(ImageFolderDataset):
    """An image folder sample plus "label_map": (R, R) int64 class ids from the paired PNG."""

    def __init__(self, root: str | Path, label_maps: str | Path, resolution: int, split: str = "train",
                 crop: Crop = "center", flip: bool = False, val_fraction: float = 0.05):
        super().__init__(root, resolution, split, crop, flip, val_fraction)
        self.label_root = Path(label_maps).expanduser()
        if not self.label_root.is_dir():
            raise DataError(f"label-map folder {self.label_root} does not exist or is not a folder")
        missing = [f for f in self.files if not self.map_path(f).is_file()]
        if missing:
            raise DataError(f"{len(missing)} images have no label map, e.g. {self.root / missing[0]} needs "
                            f"{self.map_path(missing[0])}; add the maps or remove those images")

    def map_path(self, relative: Path) -> Path:
        return self.label_root / relative.with_suffix(".png")

    def __getitem__(self, key: int | tuple[int, int | None]) -> dict | None:
        index, seed = key if isinstance(key, tuple) else (key, None)
        relative = self.files[index]
        try:
            img, label_map = load_rgb(self.root / relative), read_label_map(self.map_path(relative))
            if label_map.shape != (img.height, img.width):
                raise DataError(f"label map {self.map_path(relative)} is {label_map.shape[1]}x{label_map.shape[0]} "
                                f"but its image is {img.width}x{img.height}; they must match")
            caption = self.caption(index)
        except DataError as err:
            log.warning("skipping %s", err)
            return None  # collate_skipping drops it and counts it
        generator = sample_generator(seed)
        if self.crop == "random" and generator is None:
            generator = sample_generator(index)  # a fixed view when no per-sample seed is given
        size = self.resolution
        window = crop_window(img.width, img.height, size, self.crop, generator)
        image = to_tensor(apply_window(img, window, size))
        label_map = crop_label_map(label_map, window, size)
        if self.flip and draw_flip(generator):
            image, label_map = image.flip(-1), label_map.flip(-1)
        return {"image": image, "label_map": label_map, "caption": caption,
                "label": self.class_names.index(self.class_of(relative)), "index": index}

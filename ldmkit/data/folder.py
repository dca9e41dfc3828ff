"""Users' own images: a folder tree of jpg/png/webp files, optional captions and class folders.

- Recursive; hidden files and folders are ignored; the order is the sorted relative paths.
- Caption: a sidecar `name.txt` next to `name.jpg` (optional; "" when absent).
- Class: the first sub-folder under the root (`root/cat/x.jpg` -> "cat"); files at the top level
  are in class "(root)". `class_names` is sorted, labels index into it.
- Split: a file is in validation when a hash of its relative path falls in `val_fraction`,
  so the split is stable when files are added.
- A corrupt or unreadable file is skipped with a warning (`collate_skipping` counts it per
  batch), never a crash mid-epoch.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from torch.utils.data import Dataset

from ldmkit.data.images import IMAGE_SUFFIXES, load_rgb, to_tensor
from ldmkit.data.transforms import Crop, random_flip, resize_and_crop, sample_generator
from ldmkit.errors import DataError

log = logging.getLogger(__name__)
TOP_LEVEL_CLASS = "(root)"


def list_images(root: Path) -> list[Path]:
    """Every image file under `root` (relative paths, sorted), skipping hidden entries."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append((Path(folder) / name).relative_to(root))
    return sorted(found)


def in_validation(relative: Path, val_fraction: float) -> bool:
    digest = int(hashlib.sha1(relative.as_posix().encode()).hexdigest(), 16)
    return (digest % 10_000) < val_fraction * 10_000


class ImageFolderDataset(Dataset):
    """{"image": (3,R,R) in [-1,1], "caption": str, "label": int, "index": int} from a folder tree."""

    def __init__(self, root: str | Path, resolution: int, split: str = "train", crop: Crop = "center",
                 flip: bool = False, val_fraction: float = 0.05):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist or is not a folder")
        if split not in ("train", "val", "all"):
            raise DataError(f"split must be 'train', 'val' or 'all', got {split!r}")
        files = list_images(self.root)
        if split != "all":
            files = [f for f in files if in_validation(f, val_fraction) == (split == "val")]
        if not files:
            raise DataError(f"no {'/'.join(IMAGE_SUFFIXES)} images for split '{split}' under {self.root}")
        self.files, self.resolution, self.crop, self.flip = files, resolution, crop, flip
        self.class_names = sorted({self.class_of(f) for f in list_images(self.root)})

    @staticmethod
    def class_of(relative: Path) -> str:
        return relative.parts[0] if len(relative.parts) > 1 else TOP_LEVEL_CLASS

    def __len__(self) -> int:
        return len(self.files)

    def caption(self, index: int) -> str:
        sidecar = (self.root / self.files[index]).with_suffix(".txt")
        return sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else ""

    def __getitem__(self, key: int | tuple[int, int | None]) -> dict | None:
        index, seed = key if isinstance(key, tuple) else (key, None)
        generator = sample_generator(seed)
        path = self.root / self.files[index]
        try:
            img = load_rgb(path)
        except DataError as err:
            log.warning("skipping %s", err)
            return None  # collate_skipping drops it and counts it
        if self.crop == "random" and generator is None:
            generator = sample_generator(index)  # a fixed view when no per-sample seed is given
        image = to_tensor(resize_and_crop(img, self.resolution, self.crop, generator))
        if self.flip:
            image = random_flip(image, generator)
        return {"image": image, "caption": self.caption(index),
                "label": self.class_names.index(self.class_of(self.files[index])), "index": index}

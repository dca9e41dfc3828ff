"""Users' own images: a folder tree of jpg/png/webp files, optional captions and class folders.

- Recursive; hidden files and folders are ignored; the order is the sorted relative paths.
- Caption: a sidecar `name.txt` (UTF-8) next to `name.jpg` (optional; "" when absent).
- Class: the first sub-folder under the root (`root/cat/x.jpg` -> "cat"); files at the top level
  are in class "(root)". `class_names` is sorted, labels index into it.
- Split: a file is in validation when a hash of its relative path falls in `val_fraction`,
  so the split is stable when files are added.
- A corrupt or unreadable file (or a caption that is not UTF-8) is skipped with a warning
  (`collate_skipping` counts it per batch), never a crash mid-epoch.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
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
            raise DataError(f"image folder {self.root} does not exist or is not a folder; give the folder that "
                            f"holds your {'/'.join(IMAGE_SUFFIXES)} images (searched recursively)")
        if split not in ("train", "val", "all"):
            raise DataError(f"split must be 'train', 'val' or 'all', got {split!r}")
        every = files = list_images(self.root)
        if split != "all":
            files = [f for f in every if in_validation(f, val_fraction) == (split == "val")]
        if not every:
            raise DataError(f"no {'/'.join(IMAGE_SUFFIXES)} images under {self.root} (hidden files and other "
                            "suffixes are ignored); put images there or give the folder that holds them")
        if not files:
            fix = "raise data.val_fraction" if split == "val" else "lower data.val_fraction"
            raise DataError(f"no images for split '{split}' under {self.root}: data.val_fraction {val_fraction} "
                            f"of its {len(every)} images puts none there; add images or {fix}")
        self.files, self.split, self.resolution, self.crop, self.flip = files, split, resolution, crop, flip
        self.class_names = sorted({self.class_of(f) for f in every})

    def __str__(self) -> str:
        return f"the '{self.split}' split of image folder {self.root} ({len(self.files)} images)"

    @staticmethod
    def class_of(relative: Path) -> str:
        return relative.parts[0] if len(relative.parts) > 1 else TOP_LEVEL_CLASS

    def __len__(self) -> int:
        return len(self.files)

    def labels(self) -> torch.Tensor:
        """(n,) every image's class (index into class_names: its top-level sub-folder)."""
        return torch.tensor([self.class_names.index(self.class_of(f)) for f in self.files], dtype=torch.long)

    def caption(self, index: int) -> str:
        """The sidecar caption `name.txt` (UTF-8), "" without one; a DataError when it cannot be read."""
        sidecar = (self.root / self.files[index]).with_suffix(".txt")
        if not sidecar.is_file():
            return ""
        try:
            return sidecar.read_text(encoding="utf-8-sig").strip()  # -sig: drops a byte-order mark
        except UnicodeDecodeError as err:
            raise DataError(f"caption {sidecar} is not UTF-8 text ({err.reason} at byte {err.start}); "
                            "save it as UTF-8 or delete it") from err
        except OSError as err:
            raise DataError(f"cannot read caption {sidecar}: {err}; fix or delete the file") from err

    def __getitem__(self, key: int | tuple[int, int | None]) -> dict | None:
        index, seed = key if isinstance(key, tuple) else (key, None)
        generator = sample_generator(seed)
        path = self.root / self.files[index]
        try:
            img, caption = load_rgb(path), self.caption(index)
        except DataError as err:
            log.warning("skipping %s", err)
            return None  # collate_skipping drops it and counts it
        if self.crop == "random" and generator is None:
            generator = sample_generator(index)  # a fixed view when no per-sample seed is given
        image = to_tensor(resize_and_crop(img, self.resolution, self.crop, generator))
        if self.flip:
            image = random_flip(image, generator)
        return {"image": image, "caption": caption,
                "label": self.class_names.index(self.class_of(self.files[index])), "index": index}

"""Which images a run trains on: the dataset config and the one factory that builds datasets."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch.utils.data import Dataset

from ldmkit.data.transforms import Crop
from ldmkit.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["openmoji", "folder", "webdataset", "scenes", "coco"] = "openmoji"
    path: str = ""  # folder: its root; webdataset: the shards, e.g. data/part-{00000..00099}.tar
    resolution: int = 64
    crop: Crop = "center"  # folder datasets: center or random crop after resizing the short side
    flip: bool = False  # random horizontal flips while training
    val_fraction: float = 0.05  # folder datasets: share of files held out for validation
    cache_dir: str | None = None  # rendered OpenMoji and other caches; default ~/.cache/ldmkit
    num_workers: int = 0  # DataLoader worker processes
    annotations: str = ""  # coco: the COCO-style annotation JSON (boxes); data.path holds the images
    label_maps: str = ""  # folder: a folder of label-map PNGs paired with the images (data/label_maps.py)
    max_boxes: int = 8  # scenes, coco: boxes per sample, padded to this count (= conditioning.layout.max_boxes)
    classes: tuple[str, ...] = ()  # openmoji: keep only these CLDR classes (openmoji.CLASS_NAMES); empty: all
    balance: Literal["none", "classes"] = "none"  # training draws: as stored, or every class equally often

    def __post_init__(self):
        if self.dataset not in ("openmoji", "scenes") and not self.path:
            raise ConfigError(f"data.path must name the images when data.dataset is '{self.dataset}'; set "
                              "data.path=PATH (a folder, or the shards' pattern for webdataset)")
        if self.resolution < 8:
            raise ConfigError(f"data.resolution must be at least 8 px, got {self.resolution}; the shipped "
                              "configs use 64")
        if self.dataset == "coco" and not self.annotations:
            raise ConfigError("data.annotations must name the COCO-style JSON file when data.dataset is 'coco'; "
                              "set data.annotations=PATH/instances.json")
        if self.label_maps and self.dataset != "folder":
            raise ConfigError(f"data.label_maps pairs label maps with an image folder; set data.dataset: folder "
                              f"(got '{self.dataset}'; the 'scenes' dataset has its own label maps)")
        if self.classes and self.dataset != "openmoji":
            raise ConfigError(f"data.classes selects OpenMoji classes; it does nothing for data.dataset "
                              f"'{self.dataset}' (sort your own images into class sub-folders instead)")
        if self.balance == "classes" and self.dataset not in ("openmoji", "folder"):
            raise ConfigError(f"data.balance: classes draws by the class labels of an openmoji or folder dataset; "
                              f"data.dataset '{self.dataset}' has none (set data.balance: none)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}; 0.05 holds out one "
                              "image in twenty")


def build_dataset(cfg: DataConfig, split: str, augment: bool | None = None) -> Dataset:
    """The dataset named by `cfg` for split 'train', 'val' or 'all' (augmentation on for 'train')."""
    augment = (split == "train") if augment is None else augment
    if cfg.dataset == "openmoji":
        from ldmkit.data.openmoji import OpenMojiDataset

        return OpenMojiDataset(cfg.resolution, split, flip=cfg.flip and augment, cache_dir=cfg.cache_dir,
                               classes=cfg.classes)
    if cfg.dataset == "scenes":
        from ldmkit.data.scenes import EmojiScenes

        return EmojiScenes(cfg.resolution, split, max_boxes=cfg.max_boxes, flip=cfg.flip and augment,
                           cache_dir=cfg.cache_dir)
    if cfg.dataset == "coco":
        from ldmkit.data.coco import CocoDataset

        return CocoDataset(cfg.path, cfg.annotations, cfg.resolution, split, crop=cfg.crop if augment else "center",
                           flip=cfg.flip and augment, val_fraction=cfg.val_fraction, max_boxes=cfg.max_boxes)
    if cfg.dataset == "webdataset":
        from ldmkit.data.webdataset import WebDatasetStream

        return WebDatasetStream(cfg.path, cfg.resolution, split, crop=cfg.crop if augment else "center",
                                flip=cfg.flip and augment, val_fraction=cfg.val_fraction, shuffle=augment,
                                epochs=None if augment else 1)
    if cfg.label_maps:
        from ldmkit.data.label_maps import LabelMapFolderDataset

        return LabelMapFolderDataset(cfg.path, cfg.label_maps, cfg.resolution, split,
                                     crop=cfg.crop if augment else "center", flip=cfg.flip and augment,
                                     val_fraction=cfg.val_fraction)
    from ldmkit.data.folder import ImageFolderDataset

    return ImageFolderDataset(cfg.path, cfg.resolution, split, crop=cfg.crop if augment else "center",
                              flip=cfg.flip and augment, val_fraction=cfg.val_fraction)


def data_fingerprint(cfg: DataConfig) -> str:
    """What identifies the files a user's dataset reads now: a digest of their names, sizes and modification
    times (an edited, added or removed image, caption, label map or shard changes it). "" for the data shipped
    in packages (OpenMoji, the emoji scenes), which their versions identify. Caches key on it."""
    if cfg.dataset in ("openmoji", "scenes"):
        return ""
    if cfg.dataset == "webdataset":
        from ldmkit.data.webdataset import expand_shards

        files = [Path(p) for p in expand_shards(cfg.path)]
    else:
        roots = [Path(p).expanduser() for p in (cfg.path, cfg.label_maps, cfg.annotations) if p]
        files = []
        for root in roots:
            if root.is_file():
                files.append(root)
            for folder, _, names in os.walk(root):
                files += [Path(folder) / name for name in names if not name.startswith(".")]
    listing = hashlib.sha1()
    for path in sorted(files):
        stat = path.stat() if path.exists() else None
        listing.update(f"{path}:{stat and stat.st_size}:{stat and stat.st_mtime_ns}\n".encode())
    return f"{len(files)} files, sha1 {listing.hexdigest()[:16]}"

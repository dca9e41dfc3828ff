"""Fixed random-crop views of the training split: what the latent cache encodes for `data.crop: random`.

Image i comes `views` times in a row, view k cropped with the seed `view_seed(i, k)` (a stream:
its sample seed instead of i), never flipped: the cache encodes flips as entries of their own.
The views are a property of the cache, the same for every run; which view a training sample
reads is drawn from that sample's seed (data/latents.py).
"""

from __future__ import annotations

from dataclasses import replace

from torch.utils.data import Dataset

from ldmkit.data.config import DataConfig, build_dataset
from ldmkit.data.transforms import view_seed

CROPPING_DATASETS = ("folder", "webdataset", "coco")  # those that read data.crop (label maps are folders)


def crops_at_random(cfg: DataConfig) -> bool:
    """Whether the training images are cropped at random (OpenMoji and scenes ignore data.crop)."""
    return cfg.crop == "random" and cfg.dataset in CROPPING_DATASETS


class CropViews(Dataset):
    """Entry i * views + k: view k of sample i of a map-style dataset (None, each, when it is unreadable)."""

    def __init__(self, dataset: Dataset, views: int):
        self.dataset, self.views = dataset, views
        self.class_names = list(getattr(dataset, "class_names", []))

    def __len__(self) -> int:
        return len(self.dataset) * self.views

    def __getitem__(self, entry: int) -> dict | None:
        index, view = divmod(entry, self.views)
        return self.dataset[(index, view_seed(index, view))]


def build_crop_views(cfg: DataConfig, views: int) -> Dataset:
    """The training split as `views` random crops of each image, in one ordered pass (see the module doc)."""
    if not crops_at_random(cfg):
        raise ValueError(f"crop views need data.crop: random on a {'/'.join(CROPPING_DATASETS)} dataset")
    if cfg.dataset == "webdataset":
        from ldmkit.data.webdataset import WebDatasetStream

        return WebDatasetStream(cfg.path, cfg.resolution, "train", crop="random", val_fraction=cfg.val_fraction,
                                shuffle=False, epochs=1, views=views)
    return CropViews(build_dataset(replace(cfg, flip=False), "train"), views)

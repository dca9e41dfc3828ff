import logging

import numpy as np
import pytest
import torch
from PIL import Image

from ldmkit.data import DataConfig, build_dataset
from ldmkit.data.label_maps import LabelMapFolderDataset, read_label_map
from ldmkit.errors import DataError

COLOURS = {0: (255, 255, 255), 1: (255, 0, 0), 2: (0, 0, 255)}  # class id -> colour drawn in the image


def blocky_pair(rng, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A label map of 8x8 blocks of random classes and the image painted with their colours."""
    ids = rng.integers(0, 3, (height // 8, width // 8)).repeat(8, 0).repeat(8, 1).astype(np.uint8)
    image = np.stack([np.array(COLOURS[int(c)], np.uint8) for c in ids.flat]).reshape(height, width, 3)
    return image, ids


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(0)
    images, maps = tmp_path / "images", tmp_path / "label_maps"
    (images / "sub").mkdir(parents=True)
    (maps / "sub").mkdir(parents=True)
    for name, (h, w), mode in (("a.jpg", (48, 64), "L"), ("sub/b.png", (64, 48), "P")):
        image, ids = blocky_pair(rng, h, w)
        Image.fromarray(image).save(images / name, quality=98)
        label_map = Image.fromarray(ids, mode)
        if mode == "P":  # palette PNG: the index is the class, the palette only shows it
            label_map.putpalette([v for c in sorted(COLOURS) for v in COLOURS[c]])
        label_map.save((maps / name).with_suffix(".png"))
    return images, maps


@pytest.mark.parametrize("seed", range(4))
def test_label_map_follows_the_image_through_resize_crop_and_flip(folders, seed):
    images, maps = folders
    ds = LabelMapFolderDataset(images, maps, 24, split="all", crop="random", flip=True)
    for index in range(len(ds)):
        s = ds[(index, seed)]
        assert s["label_map"].shape == (24, 24) and s["label_map"].dtype == torch.int64
        # away from block edges (where bicubic blends colours) the image shows the map's class colour
        lm = s["label_map"]
        interior = torch.ones_like(lm, dtype=torch.bool)
        interior[1:-1, 1:-1] = (lm[1:-1, 1:-1] == lm[:-2, 1:-1]) & (lm[1:-1, 1:-1] == lm[2:, 1:-1]) & \
            (lm[1:-1, 1:-1] == lm[1:-1, :-2]) & (lm[1:-1, 1:-1] == lm[1:-1, 2:])
        interior[[0, -1]], interior[:, [0, -1]] = False, False
        rgb = (s["image"] + 1) * 127.5  # (3, H, W)
        expected = torch.tensor([COLOURS[int(c)] for c in lm.flatten()]).T.reshape(3, 24, 24).float()
        assert (rgb - expected).abs()[:, interior].max() < 40


def test_pixel_values_are_class_ids(folders):
    images, maps = folders
    ids = read_label_map(maps / "a.png")
    assert ids.shape == (48, 64) and set(ids.unique().tolist()) <= {0, 1, 2}
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(maps / "rgb.png")
    with pytest.raises(DataError, match="mode RGB; it must be single-channel"):
        read_label_map(maps / "rgb.png")


def test_missing_or_mismatched_maps_are_named(folders, caplog):
    images, maps = folders
    (maps / "sub" / "b.png").unlink()
    with pytest.raises(DataError, match=r"1 images have no label map, e\.g\. .*b\.png needs .*label_maps/sub/b\.png"):
        LabelMapFolderDataset(images, maps, 16, split="all")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(maps / "sub" / "b.png")
    ds = LabelMapFolderDataset(images, maps, 16, split="all")
    with caplog.at_level(logging.WARNING):
        assert ds[1] is None  # skipped: the map is 10x10 but the image 48x64
    assert "they must match" in caplog.text


def test_data_config_builds_it(folders):
    images, maps = folders
    cfg = DataConfig(dataset="folder", path=str(images), label_maps=str(maps), resolution=16, val_fraction=0.0)
    assert isinstance(build_dataset(cfg, "train"), LabelMapFolderDataset)
    with pytest.raises(ValueError, match="data.label_maps pairs label maps with an image folder"):
        DataConfig(dataset="openmoji", label_maps=str(maps))


def test_a_caption_that_is_not_utf8_skips_its_sample(folders, caplog):
    images, maps = folders
    (images / "a.txt").write_bytes(b"\xff\xfe r\x00e\x00d\x00")  # UTF-16, not UTF-8
    ds = LabelMapFolderDataset(images, maps, 24, split="all")
    with caplog.at_level(logging.WARNING):
        assert ds[0] is None and ds[1]["caption"] == ""
    assert "a.txt is not UTF-8 text" in caplog.text

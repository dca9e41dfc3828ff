import logging

import numpy as np
import pytest
import torch
from PIL import Image

from ldmkit.data.folder import ImageFolderDataset
from ldmkit.data.images import load_rgb
from ldmkit.data.loader import eval_loader
from ldmkit.errors import DataError


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "cats" / "deep").mkdir(parents=True)
    (tmp_path / "dogs").mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "cats" / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (50, 30), dtype=np.uint8), "L").save(tmp_path / "cats" / "deep" / "b.png")
    (tmp_path / "cats" / "deep" / "b.txt").write_text("a grey cat\n")
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255  # red where opaque, transparent elsewhere
    rgba[:16, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "dogs" / "c.png")
    Image.fromarray(rng.integers(0, 4, (32, 32), dtype=np.uint8), "P").save(tmp_path / "dogs" / "d.webp")
    (tmp_path / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (tmp_path / "notes.md").write_text("ignored")
    return tmp_path


def test_recursive_listing_classes_captions_and_modes(folder):
    ds = ImageFolderDataset(folder, 16, split="all")
    assert [f.as_posix() for f in ds.files] == ["cats/a.jpg", "cats/deep/b.png", "dogs/broken.jpg", "dogs/c.png",
                                                "dogs/d.webp"]
    assert ds.class_names == ["cats", "dogs"]
    b = ds[1]
    assert b["caption"] == "a grey cat" and b["label"] == 0 and b["image"].shape == (3, 16, 16)
    c = ds[3]["image"]  # RGBA over white: top half red, bottom half white
    assert torch.allclose(c[:, 12:, :], torch.ones(3, 4, 16), atol=1e-6)
    assert c[0, :4].min() > 0.99 and c[1, :4].max() < -0.99


def test_corrupt_file_is_skipped_with_a_warning_and_counted(folder, caplog):
    ds = ImageFolderDataset(folder, 16, split="all")
    with caplog.at_level(logging.WARNING):
        batches = list(eval_loader(ds, batch_size=5))
    assert batches[0]["skipped"] == 1 and batches[0]["image"].shape == (4, 3, 16, 16)
    assert "broken.jpg" in caplog.text
    with pytest.raises(DataError, match=r"cannot read image .*broken\.jpg.*replace or delete"):
        load_rgb(folder / "dogs" / "broken.jpg")


def test_random_crop_and_flip_follow_the_seed(folder):
    ds = ImageFolderDataset(folder, 24, split="all", crop="random", flip=True)
    assert torch.equal(ds[(0, 7)]["image"], ds[(0, 7)]["image"])
    views = {ds[(0, s)]["image"].sum().item() for s in range(8)}
    assert len(views) > 1


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope", 16)
    with pytest.raises(DataError, match="no .* images"):
        ImageFolderDataset(tmp_path, 16)


def test_a_caption_that_is_not_utf8_skips_its_sample_with_a_warning(folder, caplog):
    (folder / "cats" / "a.txt").write_bytes(b"caf\xe9 au lait")  # Latin-1, not UTF-8
    (folder / "dogs" / "c.txt").write_bytes("\ufeffa red dog".encode("utf-8"))  # UTF-8 with a byte-order mark
    ds = ImageFolderDataset(folder, 16, split="all")
    with caplog.at_level(logging.WARNING):
        assert ds[0] is None
        (batch,) = eval_loader(ds, batch_size=5)
    assert batch["skipped"] == 2 and batch["caption"] == ["a grey cat", "a red dog", ""]  # a.jpg, broken.jpg
    assert "caption" in caplog.text and "a.txt is not UTF-8 text" in caplog.text and "save it as UTF-8" in caplog.text
    with pytest.raises(DataError, match=r"a\.txt is not UTF-8 text \(invalid continuation byte at byte 3\)"):
        ds.caption(0)


def test_an_empty_split_says_how_to_fill_it(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "only.png")
    with pytest.raises(DataError, match=r"no images for split 'val' .*data.val_fraction 0.05 of its 1 images puts "
                                        r"none there; add images or raise data.val_fraction"):
        ImageFolderDataset(tmp_path, 8, split="val")
    with pytest.raises(DataError, match="no images for split 'train' .* lower data.val_fraction"):
        ImageFolderDataset(tmp_path, 8, split="train", val_fraction=0.9999)

"""Images over Pillow's decompression-bomb limit: a DataError that says the size, the limit and the fix."""

import logging
import warnings

import pytest
from PIL import Image

from ldmkit.cli import main
from ldmkit.data.folder import ImageFolderDataset
from ldmkit.data.images import load_rgb
from ldmkit.data.loader import eval_loader
from ldmkit.errors import DataError


@pytest.fixture
def limit_100(monkeypatch):
    """Pillow's limit lowered to 100 pixels for this test only (errors above 200), so tiny files trip it."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)


def test_an_image_over_the_limit_names_its_pixels_the_limit_and_the_fix(tmp_path, limit_100):
    Image.new("RGB", (20, 20)).save(tmp_path / "big.png")  # 400 pixels > 2 x 100: Pillow's error
    with pytest.raises(DataError, match=r"image .*big\.png has 400 pixels, more than Pillow's decompression-bomb "
                                        r"limit of 200 \(PIL\.Image\.MAX_IMAGE_PIXELS\); downscale it first"):
        load_rgb(tmp_path / "big.png")
    assert Image.MAX_IMAGE_PIXELS == 100  # the user's limit is left as it is


def test_the_warning_turned_into_an_error_is_the_same_data_error(tmp_path, limit_100):
    Image.new("RGB", (12, 12)).save(tmp_path / "large.png")  # 144 pixels: over 100, under 200: a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(DataError, match="large.png has 144 pixels, more than .* limit of 100 "):
            load_rgb(tmp_path / "large.png")
    with pytest.warns(Image.DecompressionBombWarning):  # left as a warning, the image loads
        assert load_rgb(tmp_path / "large.png").size == (12, 12)


def test_a_dataset_skips_and_counts_it(tmp_path, limit_100, caplog):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    Image.new("RGB", (20, 20)).save(tmp_path / "b.png")
    ds = ImageFolderDataset(tmp_path, 8, split="all")
    with caplog.at_level(logging.WARNING):
        (batch,) = eval_loader(ds, batch_size=2)
    assert batch["skipped"] == 1 and batch["image"].shape == (1, 3, 8, 8)
    assert "b.png has 400 pixels" in caplog.text


def test_a_single_image_command_says_it_in_one_line(tmp_path, limit_100, capsys):
    Image.new("RGB", (20, 20)).save(tmp_path / "big.png")
    code = main(["upscale", str(tmp_path / "big.png"), "--model", str(tmp_path / "model"), "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert err.startswith("ldmkit upscale: error: image ") and "has 400 pixels" in err and "downscale it" in err

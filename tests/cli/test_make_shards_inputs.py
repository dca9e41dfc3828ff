"""`ldmkit make-shards` with the brace form as output, and every bad input as one clear line (exit 2)."""

import numpy as np
import pytest
from PIL import Image

from ldmkit.cli import main


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def fails(capsys, *argv) -> str:
    """Run `ldmkit make-shards ARGV...`; it must end with exit code 2 and one error line: that line."""
    code = main(["make-shards", *map(str, argv)])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("ldmkit make-shards: error: ")
    return captured.err


def test_the_brace_form_names_the_shards_zero_padded_to_its_width(tmp_path, folder, capsys):
    assert main(["make-shards", str(folder), str(tmp_path / "out" / "part-{00000..00099}.tar"),
                 "--shard-size", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["part-00000.tar", "part-00001.tar",
                                                                    "part-00002.tar"]
    out = capsys.readouterr().out
    assert "wrote 5 samples into 3 shards" in out
    assert f"read them with data.path: {tmp_path / 'out' / 'part-{00000..00002}.tar'}" in out
    assert main(["make-shards", str(folder), str(tmp_path / "fmt" / "part-{:05d}.tar"), "--shard-size", "5"]) == 0
    assert [p.name for p in (tmp_path / "fmt").iterdir()] == ["part-00000.tar"]


def test_a_range_too_small_fails_before_anything_is_written(tmp_path, folder, capsys):
    err = fails(capsys, folder, tmp_path / "out" / "part-{0..1}.tar", "--shard-size", "2")
    assert "3 shards are needed but" in err and "numbers only 2" in err and "--shard-size" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", ["0", "-3"])
def test_a_shard_size_below_one_is_refused(tmp_path, folder, capsys, size):
    err = fails(capsys, folder, tmp_path / "out" / "part-{:05d}.tar", "--shard-size", size)
    assert f"--shard-size {size}: a shard holds at least 1 sample" in err
    assert not (tmp_path / "out").exists()


def test_a_pattern_without_a_number_field_is_refused(tmp_path, folder, capsys):
    for pattern in ("part.tar", "part-{name}.tar", "part-{0..9}-{:02d}.tar"):
        err = fails(capsys, folder, tmp_path / "out" / pattern)
        assert "number field" in err and pattern in err
    assert not (tmp_path / "out").exists()


def test_a_missing_or_imageless_folder_is_named(tmp_path, capsys):
    err = fails(capsys, tmp_path / "nope", tmp_path / "out" / "part-{:05d}.tar")
    assert "image folder" in err and "nope does not exist" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("no images here")
    err = fails(capsys, tmp_path / "empty", tmp_path / "out" / "part-{:05d}.tar")
    assert "no .jpg/.jpeg/.png/.webp images under" in err and "empty" in err


def test_an_output_folder_that_cannot_be_created_is_named(tmp_path, folder, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    err = fails(capsys, folder, tmp_path / "taken" / "shards" / "part-{:05d}.tar")
    assert "cannot write shards into" in err and "taken" in err and "choose a writable output folder" in err


def test_a_caption_that_is_not_utf8_skips_its_file(tmp_path, folder, capsys, caplog):
    (folder / "1.txt").write_bytes(b"caf\xe9")
    assert main(["make-shards", str(folder), str(tmp_path / "out" / "part-{:05d}.tar")]) == 0
    captured = capsys.readouterr()
    assert "wrote 4 samples into 1 shards" in captured.out and "(1 unreadable files skipped)" in captured.out
    assert "skipping caption" in caplog.text and "1.txt is not UTF-8 text" in caplog.text


def test_a_corrupt_image_is_skipped_not_packed(tmp_path, folder, capsys, caplog):
    (folder / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature and nothing readable
    assert main(["make-shards", str(folder), str(tmp_path / "out" / "part-{:05d}.tar")]) == 0
    captured = capsys.readouterr()
    assert "wrote 4 samples into 1 shards" in captured.out and "(1 unreadable files skipped)" in captured.out
    assert "skipping cannot read image" in caplog.text and "2.png" in caplog.text

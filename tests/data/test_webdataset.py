import io
import itertools
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from ldmkit.data.images import to_pil
from ldmkit.data.loader import collate_skipping, train_loader
from ldmkit.data.webdataset import WebDatasetStream, expand_shards, output_shards, write_shards
from ldmkit.errors import ConfigError, DataError


@pytest.fixture
def shards(tmp_path, emoji32):
    samples = [{"key": f"emoji{i:03d}", "image": to_pil(emoji32[i]["image"]), "caption": emoji32[i]["caption"],
                "label": emoji32[i]["label"]} for i in range(24)]
    paths = write_shards(samples, str(tmp_path / "part-{:03d}.tar"), shard_size=6)
    return tmp_path, samples, paths


def test_round_trip_keeps_images_captions_and_labels(shards, emoji32):
    root, samples, paths = shards
    assert [p.name for p in paths] == ["part-000.tar", "part-001.tar", "part-002.tar", "part-003.tar"]
    assert expand_shards(str(root / "part-{000..003}.tar")) == paths == expand_shards(str(root / "part-*.tar"))
    stream = WebDatasetStream(str(root / "part-{000..003}.tar"), 32, split="all", shuffle=False, epochs=1)
    got = list(stream)
    assert [g["key"] for g in got] == [s["key"] for s in samples]
    for i, g in enumerate(got):
        assert torch.equal(g["image"], emoji32[i]["image"])  # PNG is lossless
        assert g["caption"] == samples[i]["caption"] and g["label"] == samples[i]["label"]


def test_ranks_see_disjoint_shards_and_resume_exactly(shards):
    root, samples, _ = shards
    pattern = str(root / "part-*.tar")

    def keys(rank, start=0, n=4):
        ds = WebDatasetStream(pattern, 32, split="all", flip=True)
        batches = itertools.islice(train_loader(ds, 2, seed=5, start_batches=start, rank=rank, world_size=2), n)
        return [k for b in batches for k in b["key"]]

    rank0, rank1 = keys(0, n=6), keys(1, n=6)
    assert not set(rank0) & set(rank1) and len(set(rank0) | set(rank1)) == 24
    assert keys(0, start=3, n=3) == rank0[6:]


def test_a_broken_member_is_skipped_and_a_missing_shard_is_named(shards, tmp_path):
    root, _, _ = shards
    with tarfile.open(root / "part-004.tar", "w") as tar:
        for name, data in (("bad.png", b"not a png"), ("bad.txt", b"caption")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    stream = WebDatasetStream(str(root / "part-004.tar"), 32, split="all", shuffle=False, epochs=1)
    assert collate_skipping(list(stream))["skipped"] == 1
    with pytest.raises(DataError, match="part-005.tar does not exist"):
        WebDatasetStream(str(root / "part-{003..009}.tar"), 32)


def _tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_bad_caption_or_class_member_skips_its_sample_like_a_bad_image(tmp_path, emoji32, caplog):
    png = io.BytesIO()
    to_pil(emoji32[0]["image"]).save(png, format="PNG")
    _tar(tmp_path / "mixed.tar", {"good.png": png.getvalue(), "good.txt": b"a ball", "good.cls": b"3",
                                  "latin.png": png.getvalue(), "latin.txt": b"caf\xe9",
                                  "word.png": png.getvalue(), "word.cls": b"three",
                                  "binary.png": png.getvalue(), "binary.cls": b"\xff\xfe",
                                  "broken.png": b"not a png"})
    stream = WebDatasetStream(str(tmp_path / "mixed.tar"), 32, split="all", shuffle=False, epochs=1)
    with caplog.at_level("WARNING"):
        batch = collate_skipping(list(stream))
    assert batch["skipped"] == 4 and batch["key"] == ["good"] and batch["label"].tolist() == [3]
    assert "latin of " in caplog.text and "latin.txt is not UTF-8 text" in caplog.text
    assert "its class word.cls is 'three', not an integer" in caplog.text
    assert "binary.cls is not UTF-8 text" in caplog.text
    assert "its image broken.png: not an image format Pillow knows" in caplog.text and "BytesIO" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # the next passes skip them again, silently
        batch = collate_skipping(list(WebDatasetStream(str(tmp_path / "mixed.tar"), 32, split="all", shuffle=False,
                                                       epochs=2)))
    assert batch["skipped"] == 8 and caplog.text == ""


def test_output_names_take_a_brace_range_or_a_format_field(tmp_path):
    samples = [{"key": f"k{i}", "image": b"x", "ext": "png"} for i in range(5)]
    paths = write_shards(samples, str(tmp_path / "a" / "part-{0010..0099}.tar"), shard_size=2)
    assert [p.name for p in paths] == ["part-0010.tar", "part-0011.tar", "part-0012.tar"]
    assert expand_shards(str(tmp_path / "a" / "part-{0010..0012}.tar")) == paths
    paths = write_shards(samples, str(tmp_path / "b" / "part-{:03d}.tar"), shard_size=5)
    assert [p.name for p in paths] == ["part-000.tar"]
    with pytest.raises(ConfigError, match=r"'.*part-\{0..1\}.tar' numbers only 2 shards and samples remain"):
        write_shards(samples, str(tmp_path / "c" / "part-{0..1}.tar"), shard_size=2)
    with pytest.raises(ConfigError, match="need one number field"):
        output_shards(str(tmp_path / "part.tar"), 1)
    with pytest.raises(ConfigError, match="at least 1 sample"):
        write_shards(samples, str(tmp_path / "d" / "part-{:03d}.tar"), shard_size=0)


def test_views_repeat_each_sample_with_its_own_fixed_crop(tmp_path):
    rng = np.random.default_rng(0)  # 6 wide images: read at 16 px, 65 crop positions across
    samples = [{"key": f"s{i}", "image": Image.fromarray(rng.integers(0, 256, (24, 120, 3), dtype=np.uint8))}
               for i in range(6)]
    (shard,) = write_shards(samples, str(tmp_path / "part-{0..0}.tar"), shard_size=6)

    def images(views):
        stream = WebDatasetStream(str(shard), 16, split="all", crop="random", shuffle=False, epochs=1, views=views)
        return [s["image"] for s in stream]

    once, first, again = images(1), images(3), images(3)
    assert len(once) == 6 and len(first) == 18
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # fixed crops
    distinct = [len({c.sum().item() for c in first[3 * i:3 * i + 3]}) for i in range(6)]
    assert min(distinct) >= 2 and sum(distinct) >= 16  # sample i's views are crops drawn one by one

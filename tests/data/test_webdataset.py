import io
import itertools
import tarfile

import pytest
import torch

from ldmkit.data.images import to_pil
from ldmkit.data.loader import collate_skipping, train_loader
from ldmkit.data.webdataset import WebDatasetStream, expand_shards, write_shards
from ldmkit.errors import DataError


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

"""`ldmkit make-shards FOLDER "OUT/part-{:05d}.tar"`, then the shards as `data.dataset: webdataset`."""

import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from ldmkit.data import DataConfig, build_dataset
from ldmkit.data.latents import LatentCacheDataset
from ldmkit.data.loader import eval_loader

# class sub-folders (sorted: cat = 0, dog = 1), captions beside some of the images
FILES = {"cat/a.png": "a red cat", "cat/b.png": None, "cat/c.png": "a tabby cat", "dog/a.png": "a dog",
         "dog/b.png": "two dogs", "dog/c.png": None, "dog/d.png": "a grey dog"}
SHARDS = "part-{00000..00002}.tar"  # 7 files, 3 per shard


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for name, caption in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        if caption is not None:
            path.with_suffix(".txt").write_text(caption + "\n")
    return root


def members(shard) -> dict[str, bytes]:
    with tarfile.open(shard) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def test_shards_hold_the_files_captions_and_classes(tmp_path, folder, tiny, capsys):
    out = tmp_path / "shards"
    tiny.cli("make-shards", folder, out / "part-{:05d}.tar", "--shard-size", "3")
    assert "wrote 7 samples into 3 shards" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.tar", "part-00001.tar", "part-00002.tar"]
    stored = {}
    for shard in sorted(out.iterdir()):
        stored.update(members(shard))
    assert len(members(out / "part-00002.tar")) == 3  # the 7th file, with its caption and class
    for i, (name, caption) in enumerate(FILES.items()):  # in sorted order, keyed by position
        key = f"{i:09d}"
        assert stored.pop(f"{key}.png") == (folder / name).read_bytes()  # the bytes as they are
        assert stored.pop(f"{key}.cls") == (b"0" if name.startswith("cat") else b"1")
        if caption is not None:
            assert stored.pop(f"{key}.txt") == caption.encode()
    assert stored == {}  # nothing else: no caption member for files without one

    # read back through data.path with a brace range: the folder's own samples, image for image
    data = DataConfig(dataset="webdataset", path=str(out / SHARDS), resolution=16)
    streamed = [s for batch in eval_loader(build_dataset(data, "all"), 7) for s in unbatch(batch)]
    direct = build_dataset(DataConfig(dataset="folder", path=str(folder), resolution=16), "all")
    assert len(streamed) == 7
    for s, i in zip(streamed, range(7)):
        d = direct[i]
        assert (s["caption"], s["label"]) == (d["caption"], d["label"])
        assert torch.equal(s["image"], d["image"])


def unbatch(batch: dict) -> list[dict]:
    return [{"image": batch["image"][i], "caption": batch["caption"][i], "label": int(batch["label"][i])}
            for i in range(len(batch["caption"]))]


def test_training_on_shards_resumes_exactly_and_caches_their_latents(tmp_path, folder, tiny, tiny_autoencoder):
    out = tmp_path / "shards"
    tiny.cli("make-shards", folder, out / "part-{:05d}.tar", "--shard-size", "3")
    shards = ["data.dataset=webdataset", f"data.path={out / SHARDS}", "data.classes=[]"]

    # encoded every step (latent_cache: false): the stream resumes where it stopped (a fixed scale_factor
    # saves measuring it on 512 samples of the endless 7-image stream)
    stream = [*shards, "latent_cache=false", "scale_factor=1.0"]
    full, split = tmp_path / "full", tmp_path / "split"
    tiny.cli(*tiny.ldm(full, 3, tiny_autoencoder, *stream))
    tiny.cli(*tiny.ldm(split, 1, tiny_autoencoder, *stream))
    tiny.cli("train", "--resume", split, "--set", "train.steps=3")
    assert set(tiny.losses(full)) == {1, 2, 3} and tiny.losses(split) == tiny.losses(full)
    assert not (tiny.cache / "latents").exists()

    # the default, latent_cache: true: the training split of the shards, encoded once with its labels
    tiny.cli(*tiny.ldm(tmp_path / "cached", 1, tiny_autoencoder, *shards))
    (cache,) = (tiny.cache / "latents").iterdir()
    train = build_dataset(DataConfig(dataset="webdataset", path=str(out / SHARDS), resolution=32), "train",
                          augment=False)
    expected = [s for batch in eval_loader(train, 7) for s in unbatch(batch)]
    cached = LatentCacheDataset(cache)
    assert 0 < len(cached) == len(expected) <= 7
    assert [cached[i]["label"] for i in range(len(cached))] == [s["label"] for s in expected]
    assert [cached[i]["caption"] for i in range(len(cached))] == [s["caption"] for s in expected]

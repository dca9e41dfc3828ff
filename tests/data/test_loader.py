"""Fixed batches and training streams over datasets with unreadable files."""

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from ldmkit.data.folder import ImageFolderDataset
from ldmkit.data.loader import check_readable, fixed_batch, train_loader
from ldmkit.data.sampler import EpochSampler, class_balance
from ldmkit.errors import DataError


@pytest.fixture
def half_broken(tmp_path):
    """Eight files: 0, 2, 4, 6 are broken, 1, 3, 5, 7 random 12x12 images."""
    rng = np.random.default_rng(0)
    for i in range(8):
        path = tmp_path / f"{i}.png"
        if i % 2:
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)
        else:
            path.write_bytes(b"not a png")
    return tmp_path


def test_fixed_batch_puts_readable_samples_in_place_of_unreadable_ones(half_broken):
    ds = ImageFolderDataset(half_broken, 8, split="all")
    batch = fixed_batch(ds, 2)  # spread: files 0 and 7; 0 is broken, so the next readable one, 1, stands in
    assert batch["index"].tolist() == [7, 1]
    assert fixed_batch(ds, 16)["index"].tolist() == [1, 3, 5, 7]


def test_no_readable_sample_is_a_data_error_naming_the_split(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    Image.new("RGB", (8, 8)).save(tmp_path / "good.png")
    val = ImageFolderDataset(tmp_path, 8, split="all")
    val.files = [f for f in val.files if f.name == "bad.jpg"]  # a split holding the broken file alone
    message = (r"no readable sample among all 1 samples of the 'all' split of image folder .* \(1 images\): every "
               r"one was skipped .*; replace or delete the unreadable files, or add images \(a validation split "
               r"also grows with data.val_fraction\)")
    with pytest.raises(DataError, match=message):
        fixed_batch(val, 16)
    with pytest.raises(DataError, match=message):
        check_readable(val)


def test_a_training_batch_of_unreadable_files_only_is_left_out_and_counted(half_broken):
    ds = ImageFolderDataset(half_broken, 8, split="all")
    order = [index for index, _ in itertools.islice(EpochSampler(len(ds), seed=0), 12)]  # what the loader reads
    expected, skipped = [], 0
    for index in order:
        if index % 2:  # readable: a batch (of one) carrying the count of the empty batches before it
            expected.append((index, skipped))
            skipped = 0
        else:
            skipped += 1
    got = [(int(b["index"][0]), b["skipped"]) for b in itertools.islice(train_loader(ds, 1, seed=0), len(expected))]
    assert got == expected and sum(s for _, s in got) > 0


def test_class_balance_draws_every_class_equally_often_reproducibly_and_resumes():
    labels = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)  # 90 : 9 : 1
    weights = class_balance(labels)
    stream = EpochSampler(100, seed=3, weights=weights)
    keys = list(itertools.islice(iter(stream), 3000))
    share = torch.bincount(labels[[i for i, _ in keys]], minlength=3) / 3000
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.04)  # not 0.9 / 0.09 / 0.01
    assert keys == list(itertools.islice(iter(EpochSampler(100, seed=3, weights=weights)), 3000))
    resumed = EpochSampler(100, seed=3, weights=weights, start=1234)  # the same continuation after a restart
    assert list(itertools.islice(iter(resumed), 500)) == keys[1234:1734]
    shards = [EpochSampler(100, seed=3, weights=weights, rank=r, world_size=2) for r in (0, 1)]
    firsts = [list(itertools.islice(iter(s), 4)) for s in shards]
    assert sorted(firsts[0] + firsts[1]) == sorted(keys[:8])  # ranks split one stream between them


def test_class_balance_needs_labels():
    from ldmkit.data import DataConfig
    from ldmkit.data.loader import dataset_labels
    from ldmkit.errors import ConfigError

    with pytest.raises(ValueError, match="data.balance: classes draws by the class labels of an openmoji or folder"):
        DataConfig(dataset="webdataset", path="shards/part-{0..9}.tar", balance="classes")
    with pytest.raises(ConfigError, match="needs the class label of every sample.*set data.balance: none"):
        dataset_labels(torch.utils.data.TensorDataset(torch.zeros(3)))

import collections

import pytest
import torch

from ldmkit.data.openmoji import CLASS_NAMES, OpenMojiDataset, records
from ldmkit.data.sampler import EpochSampler
from ldmkit.errors import DataError


def test_catalogue_has_captions_classes_and_a_stable_split():
    recs = records()
    assert 3800 < len(recs) < 4500
    by_caption = {r.caption: r for r in recs}
    assert by_caption["red apple"].hexcode == "1F34E"
    assert CLASS_NAMES[by_caption["red apple"].label] == "food & drink"
    assert CLASS_NAMES[by_caption["grinning face"].label] == "smileys & emotion"
    assert CLASS_NAMES[by_caption["Japan"].label] == "flags"
    assert CLASS_NAMES[by_caption["waving hand medium skin tone"].label] == "hands & body"
    assert set(collections.Counter(r.label for r in recs)) == set(range(len(CLASS_NAMES)))
    val = sum(r.split == "val" for r in recs) / len(recs)
    assert 0.07 < val < 0.13


def test_images_are_rendered_in_colour_and_fill_the_frame(emoji32):
    sample = emoji32[0]
    image = sample["image"]
    assert image.shape == (3, 32, 32) and image.min() >= -1 and image.max() <= 1
    assert isinstance(sample["caption"], str) and 0 <= sample["label"] < len(CLASS_NAMES)
    apple = next(i for i, r in enumerate(emoji32.records) if r.caption == "red apple")
    x = emoji32[apple]["image"]
    red = (x[0] > 0.3) & (x[1] < -0.2) & (x[2] < -0.2)
    assert red.float().mean() > 0.2  # a red apple is mostly red
    ink = emoji32.alpha(apple) > 0.5
    border = torch.cat([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    assert not border.any() and ink[:, 4:28].any(dim=0).all()  # margin kept, fills the frame


def test_flip_is_driven_by_the_per_sample_seed():
    ds = OpenMojiDataset(32, "val", flip=True)
    a = torch.stack([ds[(0, s)]["image"] for s in range(16)])
    b = torch.stack([ds[(0, s)]["image"] for s in range(16)])
    assert torch.equal(a, b)
    flipped = [not torch.equal(x, ds[0]["image"]) for x in a]
    assert 0 < sum(flipped) < 16


def test_sampler_resumes_and_shards_like_one_big_batch():
    full = list(zip(range(40), EpochSampler(30, seed=3)))
    resumed = list(zip(range(25), EpochSampler(30, seed=3, start=15)))
    assert [k for _, k in full[15:40]] == [k for _, k in resumed]
    ranks = [iter(EpochSampler(30, seed=3, rank=r, world_size=2)) for r in range(2)]
    one = iter(EpochSampler(30, seed=3))
    for _ in range(3):  # step with global batch 4 = 2 ranks x 2
        union = {next(ranks[r]) for r in range(2) for _ in range(2)}
        assert union == {next(one) for _ in range(4)}


def test_classes_select_a_subset_and_unknown_names_are_refused():
    ds = OpenMojiDataset(32, "val", classes=("flags", "food & drink"))
    assert 0 < len(ds) < len(OpenMojiDataset(32, "val"))
    assert {CLASS_NAMES[r.label] for r in ds.records} == {"flags", "food & drink"}
    first = ds.records.index(next(r for r in ds.records if r.label == CLASS_NAMES.index("food & drink")))
    assert ds[first]["caption"] == ds.records[first].caption
    with pytest.raises(DataError, match=r"'fruit'.*food & drink"):
        OpenMojiDataset(32, "val", classes=("fruit",))

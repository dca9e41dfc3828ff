import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from ldmkit.data import DataConfig, build_dataset
from ldmkit.data.boxes import PAD_LABEL, flip_boxes
from ldmkit.data.openmoji import OpenMojiDataset
from ldmkit.data.scenes import MAX_OBJECTS, EmojiScenes
from ldmkit.data.transforms import draw_flip, sample_generator

R = 32


@pytest.fixture(scope="module")
def scenes():
    return EmojiScenes(R, "train", count=40)


def test_scenes_are_fixed_by_index_and_seed(scenes):
    again = EmojiScenes(R, "train", count=40)
    a, b = scenes[7], again[7]
    assert all(torch.equal(a[k], b[k]) for k in ("image", "boxes", "box_labels", "label_map"))
    assert a["caption"] == b["caption"] and a["label"] == b["label"]
    other = EmojiScenes(R, "train", count=40, seed=1)[7]
    assert not torch.equal(a["image"], other["image"])
    assert not torch.equal(scenes[7]["image"], scenes[8]["image"])


def test_boxes_are_the_extents_of_the_emoji_alpha_masks(scenes):
    emoji = OpenMojiDataset(R, "all")  # the same rows as openmoji.records()
    for i in range(20):
        sample, objects = scenes[i], scenes.layout(i)
        n = int((sample["box_labels"] != PAD_LABEL).sum())
        assert 1 <= n <= MAX_OBJECTS and n == len(objects)  # no emoji of the pools vanishes
        for k, obj in enumerate(objects):
            alpha = F.interpolate(emoji.alpha(obj.emoji)[None, None], size=(obj.side, obj.side), mode="bilinear",
                                  antialias=True)[0, 0]
            rows = torch.nonzero((alpha >= 0.5).any(1)).flatten()
            cols = torch.nonzero((alpha >= 0.5).any(0)).flatten()
            expected = torch.tensor([obj.left + cols[0], obj.top + rows[0], obj.left + cols[-1] + 1,
                                     obj.top + rows[-1] + 1]) / R
            torch.testing.assert_close(sample["boxes"][k], expected.float())
            assert sample["box_labels"][k] == obj.label == emoji.records[obj.emoji].label
        assert torch.all(sample["boxes"][n:] == 0) and torch.all(sample["box_labels"][n:] == PAD_LABEL)


def test_label_map_classes_lie_in_boxes_of_that_class(scenes):
    for i in range(20):
        s = scenes[i]
        n = int((s["box_labels"] != PAD_LABEL).sum())
        ys, xs = torch.meshgrid(torch.arange(R) + 0.5, torch.arange(R) + 0.5, indexing="ij")
        covered = torch.zeros(R, R, dtype=torch.int64)  # which pixels some box of the pixel's class contains
        for box, label in zip(s["boxes"][:n] * R, s["box_labels"][:n]):
            inside = (xs > box[0]) & (xs < box[2]) & (ys > box[1]) & (ys < box[3])
            covered |= inside & (s["label_map"] == label + 1)
            assert (s["label_map"][inside] == label + 1).any()  # limited overlap: every emoji shows
        assert torch.equal(covered.bool(), s["label_map"] > 0)
        assert set(s["label_map"].unique().tolist()) <= {0} | {int(c) + 1 for c in s["box_labels"][:n]}
        # drawn on top: the last emoji's own mask carries its class everywhere
        _, _, masks = scenes.render(i)
        assert torch.all(s["label_map"][masks[-1] >= 0.5] == s["box_labels"][n - 1] + 1)
        assert s["image"].shape == (3, R, R) and s["image"].min() >= -1 and s["image"].max() <= 1


def test_flip_mirrors_image_boxes_and_label_map_together():
    plain, flipping = EmojiScenes(R, "train", count=5), EmojiScenes(R, "train", count=5, flip=True)
    seed = next(s for s in range(50) if draw_flip(sample_generator(s)))
    a, b = plain[(3, seed)], flipping[(3, seed)]
    assert torch.equal(b["image"], a["image"].flip(-1)) and torch.equal(b["label_map"], a["label_map"].flip(-1))
    n = int((a["box_labels"] != PAD_LABEL).sum())
    torch.testing.assert_close(b["boxes"][:n], flip_boxes(a["boxes"][:n]))
    keep = next(s for s in range(50) if not draw_flip(sample_generator(s)))
    assert torch.equal(flipping[(3, keep)]["image"], a["image"])


def test_batches_collate_and_splits_use_their_own_emoji():
    cfg = DataConfig(dataset="scenes", resolution=R, max_boxes=6)
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert (len(train), len(val)) == (5000, 500)
    batch = default_collate([val[i] for i in range(4)])
    assert batch["boxes"].shape == (4, 6, 4) and batch["box_labels"].shape == (4, 6)
    assert batch["label_map"].shape == (4, R, R) and batch["label_map"].dtype == torch.int64
    assert len(batch["caption"]) == 4 and batch["label"].shape == (4,)
    assert all(val.records[obj.emoji].split == "val" for i in range(10) for obj in val.layout(i))
    with pytest.raises(Exception, match="max_boxes must be at least"):
        EmojiScenes(R, "train", max_boxes=2)

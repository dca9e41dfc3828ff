"""The condition of a data batch (`ldmkit.data.conditions`): the fields each kind reads, and the
low-resolution images and masks derived from each image, drawn from its own seed."""

import pytest
import torch

from ldmkit.conditioning import ConditioningConfig
from ldmkit.conditioning.sections import ClassConfig, LowResConfig
from ldmkit.data.conditions import batch_condition, batch_keys, needs_images
from ldmkit.data.degradations import bicubic_downsample
from ldmkit.data.transforms import stream_generators
from ldmkit.errors import DataError

STREAM = 3  # any random stream: the draws depend on the seed and the stream alone


def hr_images(b=4, size=32):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def gens(seeds):
    return stream_generators(seeds, STREAM)


def test_each_kind_reads_its_batch_fields():
    expected = {"none": ((), False), "class": (("label",), False), "text": (("caption",), False),
                "layout": (("boxes", "box_labels"), False), "semantic": (("label_map",), False),
                "low_res": (("image",), True), "inpaint": (("image",), True)}
    for kind, (keys, from_images) in expected.items():
        cfg = ConditioningConfig(kind=kind)
        assert batch_keys(cfg) == keys and needs_images(cfg) == from_images, kind
    hybrid = ConditioningConfig(kind="class", hybrid="low_res")
    assert batch_keys(hybrid) == ("label", "image") and needs_images(hybrid)


def test_batch_fields_become_the_conditioners_tensor_form():
    boxes, box_labels = torch.rand(2, 3, 4), torch.tensor([[1, 2, -1], [0, -1, -1]])
    label_map = torch.randint(0, 5, (2, 8, 8))
    batch = {"label": [3, 1], "caption": ("a cat", "a dog"), "boxes": boxes, "box_labels": box_labels,
             "label_map": label_map, "image": hr_images(2)}
    assert batch_condition(ConditioningConfig(), batch, gens([0, 1])) is None
    labels = batch_condition(ConditioningConfig(kind="class"), batch, gens([0, 1]))
    assert labels.dtype == torch.int64 and labels.tolist() == [3, 1]
    assert batch_condition(ConditioningConfig(kind="text"), batch, gens([0, 1])) == ["a cat", "a dog"]
    layout = batch_condition(ConditioningConfig(kind="layout"), batch, gens([0, 1]))
    assert set(layout) == {"boxes", "labels"}
    assert torch.equal(layout["boxes"], boxes) and torch.equal(layout["labels"], box_labels)
    assert torch.equal(batch_condition(ConditioningConfig(kind="semantic"), batch, gens([0, 1])), label_map)


def test_missing_batch_fields_are_named():
    with pytest.raises(DataError, match=r"has no boxes, box_labels \(it has image, label\).*'layout' model"):
        batch_condition(ConditioningConfig(kind="layout"), {"image": hr_images(1), "label": [0]}, gens([0]))
    hybrid = ConditioningConfig(kind="class", hybrid="low_res")
    with pytest.raises(DataError, match=r"has no image \(it has label\)"):
        batch_condition(hybrid, {"label": [0]}, gens([0]))


def test_low_res_is_the_bicubic_lr_image():
    cfg = ConditioningConfig(kind="low_res")
    x = hr_images()
    lr = batch_condition(cfg, {"image": x}, gens([0, 1, 2, 3]))
    assert lr.shape == (4, 3, 8, 8) and torch.equal(lr, bicubic_downsample(x, 4))


def test_bsr_training_inputs_follow_each_sample_seed():
    cfg = ConditioningConfig(kind="low_res", low_res=LowResConfig(degradation="bsr"))
    x = hr_images()
    a = batch_condition(cfg, {"image": x}, gens([0, 1, 2, 3]))
    b = batch_condition(cfg, {"image": x[2:3]}, gens([2]))
    assert torch.equal(a[2:3], b) and a.shape == (4, 3, 8, 8)
    c = batch_condition(cfg, {"image": x[2:3]}, gens([5]))
    assert not torch.equal(b, c)  # another seed, another degradation


def test_inpaint_masks_are_binary_and_drawn_per_sample():
    cfg = ConditioningConfig(kind="inpaint")
    x = hr_images(3)
    raw = batch_condition(cfg, {"image": x}, gens([7, 8, 9]))
    again = batch_condition(cfg, {"image": x[1:2]}, gens([8]))
    assert set(raw) == {"image", "mask"} and torch.equal(raw["image"], x)
    assert raw["mask"].shape == (3, 1, 32, 32) and torch.equal(raw["mask"][1], again["mask"][0])
    assert set(raw["mask"].unique().tolist()) == {0.0, 1.0}  # binary: 1 = hole, 0 = keep
    assert not torch.equal(raw["mask"][0], raw["mask"][1])


def test_hybrid_reads_both_parts():
    cfg = ConditioningConfig(kind="class", hybrid="low_res", class_label=ClassConfig(num_classes=4))
    x = hr_images(2)
    cond = batch_condition(cfg, {"label": torch.tensor([1, 2]), "image": x}, gens([0, 1]))
    assert set(cond) == {"class", "low_res"}
    assert cond["class"].tolist() == [1, 2] and torch.equal(cond["low_res"], bicubic_downsample(x, 4))

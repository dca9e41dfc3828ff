"""A user's condition -> the conditioner's tensors (`ldmkit.pipeline.conditions`): every accepted
form, one condition for every image or one per image, and errors that say what is wrong."""

import numpy as np
import pytest
import torch
from PIL import Image

from ldmkit.conditioning import ConditioningConfig, build_conditioner
from ldmkit.conditioning.layout import PAD_LABEL, TOKENS_PER_BOX
from ldmkit.conditioning.sections import ClassConfig, LayoutConfig, LowResConfig, SemanticConfig
from ldmkit.errors import ConfigError, DataError, ShapeError
from ldmkit.pipeline.conditions import accepts, image_size, items, mask_tensor, tensors

CPU = torch.device("cpu")
CLASSES = ConditioningConfig(kind="class", class_label=ClassConfig(
    num_classes=5, embed_dim=8, names=("smileys", "people", "animals", "animals-nature", "flags")))


def as_tensors(cfg, raw, n):
    return tensors(cfg, items(cfg, raw, n))


def test_unconditional_models_take_no_condition():
    cfg = ConditioningConfig()
    assert items(cfg, None, 2) == [None, None] and tensors(cfg, [None, None]) is None
    with pytest.raises(ConfigError, match="unconditional model.*drop it"):
        items(cfg, 3, 2)


def test_classes_by_index_name_or_prefix_and_one_int_is_repeated():
    assert as_tensors(CLASSES, 2, 3).tolist() == [2, 2, 2]
    labels = as_tensors(CLASSES, [0, "FLAGS", "peo", "3", torch.tensor(1), np.int64(4)], 6)
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 4, 1, 3, 1, 4]
    assert as_tensors(CLASSES, "animals", 1).tolist() == [2]  # an exact name beats a longer one it prefixes
    assert as_tensors(CLASSES, torch.tensor([3, 0]), 2).tolist() == [3, 0]  # a batched tensor is split
    assert as_tensors(CLASSES, None, 2).tolist() == [5, 5]  # None: the null class
    assert as_tensors(CLASSES, [2, None], 2).tolist() == [2, 5]
    model = build_conditioner(CLASSES)
    torch.testing.assert_close(model(as_tensors(CLASSES, [2, None], 2))["context"][1], model.null(1, CPU)["context"][0])


def test_bad_classes_say_what_is_wrong():
    with pytest.raises(DataError, match="class 'anim' is ambiguous; classes: 0: smileys, 1: people"):
        items(CLASSES, "anim", 1)
    with pytest.raises(DataError, match="class 'cats' is unknown"):
        items(CLASSES, "cats", 1)
    with pytest.raises(DataError, match="class 5 does not exist"):
        items(CLASSES, 5, 1)
    with pytest.raises(DataError, match=r"class 7 does not exist; classes: 0 \.\. 2"):
        items(ConditioningConfig(kind="class", class_label=ClassConfig(num_classes=3)), 7, 1)
    with pytest.raises(DataError, match="a class is an index or a name, got float"):
        items(CLASSES, 1.0, 1)
    with pytest.raises(ConfigError, match="got 2 conditions for 3 images; give one, or one per image"):
        items(CLASSES, [1, 2], 3)


def test_captions_one_for_all_or_one_per_image():
    cfg = ConditioningConfig(kind="text")
    assert as_tensors(cfg, "a cat", 2) == ["a cat", "a cat"]
    assert as_tensors(cfg, ["a cat", None], 2) == ["a cat", ""]  # None: the empty (null) caption
    assert as_tensors(cfg, None, 1) == [""]
    with pytest.raises(ConfigError, match="got 3 conditions for 2 images"):
        items(cfg, ["a", "b", "c"], 2)
    with pytest.raises(DataError, match="a caption must be a str, got int 3"):
        items(cfg, 3, 1)


LAYOUTS = ConditioningConfig(kind="layout", layout=LayoutConfig(num_classes=10, embed_dim=32, max_boxes=4,
                                                                coord_bins=16, layers=1))


def test_layouts_in_every_accepted_form():
    layout = {"boxes": [[0.1, 0.2, 0.5, 0.6], [0.5, 0.5, 1.0, 1.0]], "labels": [3, 7]}
    small = {"boxes": torch.tensor([0.0, 0.0, 0.5, 0.5]), "labels": torch.tensor(2)}  # one box, flat
    cond = as_tensors(LAYOUTS, [layout, None, small], 3)
    assert cond["boxes"].shape == (3, 2, 4) and cond["labels"].dtype == torch.int64
    assert cond["labels"].tolist() == [[3, 7], [PAD_LABEL, PAD_LABEL], [2, PAD_LABEL]]
    assert torch.equal(cond["boxes"][0], torch.tensor(layout["boxes"])) and not cond["boxes"][1].any()
    torch.manual_seed(0)
    enc = build_conditioner(LAYOUTS)
    one = enc(as_tensors(LAYOUTS, layout, 2))["context"]  # one layout for every image
    assert one.shape == (2, 4 * TOKENS_PER_BOX, 32) and torch.equal(one[0], one[1])
    listed = enc(cond)["context"]
    torch.testing.assert_close(listed[0], one[0])
    torch.testing.assert_close(listed[1], enc.null(1, CPU)["context"][0])  # None = the all-padding layout
    assert as_tensors(LAYOUTS, None, 2)["labels"].shape == (2, 0)


def test_bad_layouts_say_what_is_wrong():
    with pytest.raises(ShapeError, match="a layout has 2 boxes but 1 labels"):
        items(LAYOUTS, {"boxes": [[0, 0, 0.5, 0.5]] * 2, "labels": [1]}, 1)
    with pytest.raises(DataError, match="a layout is a dict"):
        items(LAYOUTS, [[0, 0, 1, 1]], 1)
    with pytest.raises(DataError, match="integer class indices"):
        items(LAYOUTS, {"boxes": [[0, 0, 0.5, 0.5]], "labels": [1.0]}, 1)
    with pytest.raises(DataError, match=r"\[x0, y0, x1, y1\] numbers"):
        items(LAYOUTS, {"boxes": [["a", 0, 0.5, 0.5]], "labels": [1]}, 1)
    with pytest.raises(ConfigError, match="got 3 conditions for 2 images"):
        items(LAYOUTS, [None] * 3, 2)


MAPS = ConditioningConfig(kind="semantic", semantic=SemanticConfig(num_classes=4, factor=2))


def test_label_maps_in_every_accepted_form_set_the_size():
    one = torch.randint(0, 4, (8, 12))
    expected = one.expand(3, 8, 12)
    assert torch.equal(as_tensors(MAPS, one, 3), expected)
    assert torch.equal(as_tensors(MAPS, [one, one, one], 3), expected)
    assert torch.equal(as_tensors(MAPS, expected.clone(), 3), expected)  # a batched tensor is split
    assert torch.equal(as_tensors(MAPS, [one[None]] * 3, 3), expected)  # (1, H, W) each
    assert torch.equal(as_tensors(MAPS, one.numpy().astype(np.uint8), 3), expected)
    png = Image.fromarray(one.numpy().astype(np.uint8), "L")
    assert torch.equal(as_tensors(MAPS, png, 3), expected)  # pixel values are the ids
    sem = build_conditioner(MAPS)
    torch.testing.assert_close(sem(as_tensors(MAPS, png, 3))["concat"], sem(expected)["concat"])
    assert image_size(MAPS, items(MAPS, [one], 1)[0]) == (8, 12)
    assert image_size(ConditioningConfig(kind="class"), 3) is None


def test_bad_label_maps_say_what_is_wrong():
    with pytest.raises(ConfigError, match="needs a label map"):
        items(MAPS, None, 1)
    with pytest.raises(ConfigError, match="needs a label map"):
        items(MAPS, [torch.zeros(4, 4, dtype=torch.int64), None], 2)
    with pytest.raises(DataError, match="integer class ids"):
        items(MAPS, torch.zeros(4, 4), 1)
    with pytest.raises(ConfigError, match="got 2 conditions for 3 images"):
        items(MAPS, torch.zeros(2, 4, 4, dtype=torch.int64), 3)
    with pytest.raises(ShapeError, match=r"\(H, W\) class ids, got shape \(4,\)"):
        items(MAPS, torch.zeros(4, dtype=torch.int64), 1)
    with pytest.raises(DataError, match="single-channel"):
        items(MAPS, Image.new("RGB", (4, 4)), 1)
    with pytest.raises(ShapeError, match="one size"):
        as_tensors(MAPS, [torch.zeros(4, 4, dtype=torch.int64), torch.zeros(4, 6, dtype=torch.int64)], 2)


LOW_RES = ConditioningConfig(kind="low_res", low_res=LowResConfig())


def test_low_res_images_in_every_accepted_form():
    lr = torch.rand(2, 3, 8, 8) * 2 - 1
    from_list = as_tensors(LOW_RES, [lr[0], lr[1]], 2)
    from_batch = as_tensors(LOW_RES, lr, 2)
    repeated = as_tensors(LOW_RES, lr[0], 2)
    assert torch.equal(from_list, lr) and torch.equal(from_batch, lr) and torch.equal(repeated[1], lr[0])
    pil = Image.new("RGB", (8, 8), (255, 0, 0))
    assert torch.equal(as_tensors(LOW_RES, pil, 1)[0, :, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    model = build_conditioner(LOW_RES)
    assert torch.equal(model(from_list)["concat"], lr)
    assert image_size(LOW_RES, items(LOW_RES, lr[0], 1)[0]) == (32, 32)  # factor 4
    assert image_size(LOW_RES, items(LOW_RES, [lr[0]], 1)[0]) == (32, 32)
    with pytest.raises(ConfigError, match="got 2 conditions for 3 images"):
        items(LOW_RES, lr, 3)
    with pytest.raises(ConfigError, match="needs a low-resolution image"):
        items(LOW_RES, None, 2)
    with pytest.raises(ShapeError, match=r"low-resolution image must be \(3, H, W\), got \(1, 8, 8\)"):
        items(LOW_RES, torch.zeros(1, 8, 8), 1)
    with pytest.raises(DataError, match="PIL image or a \\(3, H, W\\) tensor, got list"):
        items(LOW_RES, [[0.0]], 1)


INPAINT = ConditioningConfig(kind="inpaint")


def test_inpaint_masks_are_binarised_at_one_half():
    soft = torch.full((1, 32, 32), 0.49)
    soft[..., :16] = 0.5
    mask = mask_tensor(soft)
    assert torch.equal(mask[0, :, :16], torch.ones(32, 16)) and torch.equal(mask[0, :, 16:], torch.zeros(32, 16))
    assert torch.equal(mask_tensor(soft[0]), mask) and torch.equal(mask_tensor(soft[None]), mask)  # (H, W), (1, 1, ...)
    grey = np.full((4, 6), 127, np.uint8)
    grey[:, :3] = 128  # 128 / 255 >= 0.5 > 127 / 255
    pil = mask_tensor(Image.fromarray(grey, "L"))
    assert pil.shape == (1, 4, 6) and pil[0, :, :3].eq(1).all() and pil[0, :, 3:].eq(0).all()
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert mask_tensor(clear).eq(1).all()  # transparency counts as white: fill
    assert mask_tensor(Image.new("RGB", (4, 4), (0, 0, 0))).eq(0).all()
    with pytest.raises(ShapeError, match=r"mask must be \(H, W\) or \(1, H, W\), got \(3, 4, 4\)"):
        mask_tensor(torch.zeros(3, 4, 4))


def test_inpaint_conditions_in_every_accepted_form():
    image = torch.rand(3, 16, 24) * 2 - 1
    mask = torch.zeros(16, 24)
    mask[4:8, 2:20] = 0.7
    pil_image = Image.new("RGB", (24, 16), (255, 255, 255))
    cond = as_tensors(INPAINT, [{"image": image, "mask": mask}, {"image": pil_image, "mask": mask[None]}], 2)
    assert cond["image"].shape == (2, 3, 16, 24) and cond["mask"].shape == (2, 1, 16, 24)
    assert torch.equal(cond["image"][0], image) and cond["image"][1].eq(1).all()
    assert torch.equal(cond["mask"][0, 0], (mask >= 0.5).float()) and torch.equal(cond["mask"][0], cond["mask"][1])
    repeated = as_tensors(INPAINT, {"image": image, "mask": mask}, 2)
    assert torch.equal(repeated["image"][1], image)
    assert image_size(INPAINT, items(INPAINT, {"image": pil_image, "mask": mask}, 1)[0]) == (16, 24)
    with pytest.raises(ShapeError, match="mask is 12x16 px but the image 24x16"):
        items(INPAINT, {"image": image, "mask": torch.zeros(16, 12)}, 1)
    with pytest.raises(DataError, match=r'the inpainting condition is \{"image": image, "mask": mask\}'):
        items(INPAINT, {"image": image}, 1)
    with pytest.raises(ConfigError, match="needs an image and a mask"):
        items(INPAINT, None, 1)


HYBRID = ConditioningConfig(kind="text", hybrid="low_res")


def test_hybrid_conditions_name_both_parts():
    lr = torch.rand(3, 8, 8) * 2 - 1
    cond = as_tensors(HYBRID, {"text": "a cat", "low_res": lr}, 2)
    assert set(cond) == {"text", "low_res"}
    assert cond["text"] == ["a cat", "a cat"] and torch.equal(cond["low_res"], lr.expand(2, 3, 8, 8))
    assert image_size(HYBRID, items(HYBRID, {"text": None, "low_res": lr}, 1)[0]) == (32, 32)
    with pytest.raises(DataError, match="give a dict with keys text, low_res"):
        items(HYBRID, "a cat", 1)
    with pytest.raises(DataError, match="give a dict with keys text, low_res"):
        items(HYBRID, {"text": "a cat"}, 1)
    assert accepts(HYBRID) == "a caption (--prompt) and a low-resolution image (ldmkit upscale)"
    assert accepts(ConditioningConfig()) == "no condition (an unconditional model)"

"""The concatenating conditioners of super-resolution (low_res) and inpainting."""

import pytest
import torch
from PIL import Image

from ldmkit.conditioning import ConditioningConfig, build_conditioner
from ldmkit.conditioning.sections import InpaintConfig, LowResConfig
from ldmkit.data.transforms import stream_generators
from ldmkit.errors import LdmkitError, ShapeError
from ldmkit.sampling.guidance import classifier_free_guidance

CPU = torch.device("cpu")


def low_res(**kw):
    return build_conditioner(ConditioningConfig(kind="low_res", low_res=LowResConfig(**kw)))


def inpaint(**kw):
    return build_conditioner(ConditioningConfig(kind="inpaint", inpaint=InpaintConfig(**kw)))


def hr_images(b=4, size=32):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_low_res_prepares_the_lr_image_and_concatenates_it_as_is():
    model = low_res()
    assert model.needs_images and model.concat_channels == 3
    lr = model.prepare({"image": hr_images()}, stream_generators([0, 1, 2, 3], 3))
    assert lr.shape == (4, 3, 8, 8)
    cond = model(lr, 4, CPU)
    assert torch.equal(cond["concat"], lr)
    assert model.image_size(lr[0]) == (32, 32) and model.image_size([lr[0]]) == (32, 32)


def test_low_res_rescales_to_the_latent_size_of_a_pixel_space_model():
    model = low_res(stages=2, multiplier=2.0)  # LR 8 px -> 32 px maps for an identity first stage
    cond = model(torch.zeros(2, 3, 8, 8), 2, CPU)
    assert cond["concat"].shape == (2, 3, 32, 32)


def test_bsr_training_inputs_follow_each_sample_seed():
    model = low_res(degradation="bsr")
    x = hr_images()
    a = model.prepare({"image": x}, stream_generators([0, 1, 2, 3], 3))
    b = model.prepare({"image": x[2:3]}, stream_generators([2], 3))
    assert torch.equal(a[2:3], b) and a.shape == (4, 3, 8, 8)


def test_raw_conditions_in_every_accepted_form():
    model = low_res()
    lr = torch.rand(2, 3, 8, 8) * 2 - 1
    from_list = model([lr[0], lr[1]], 2, CPU)["concat"]
    from_batch = model(lr, 2, CPU)["concat"]
    repeated = model(lr[0], 2, CPU)["concat"]
    assert torch.equal(from_list, from_batch) and torch.equal(repeated[1], lr[0])
    pil = Image.new("RGB", (8, 8), (255, 0, 0))
    assert torch.equal(model(pil, 1, CPU)["concat"][0, :, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    with pytest.raises(ShapeError, match="for a batch of 3"):
        model(lr, 3, CPU)
    with pytest.raises(LdmkitError, match="low-resolution image as its condition"):
        model(None, 2, CPU)


def test_inpaint_encodes_the_masked_image_and_appends_the_mask():
    model = inpaint()
    image = hr_images(2)
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:20, 4:30] = 1
    seen = {}

    def encode(x):  # a stand-in f = 4 first stage: average pooling, 3 latent channels
        seen["x"] = x
        return torch.nn.functional.avg_pool2d(x, 4)

    cond = model({"image": image, "mask": mask}, 2, CPU, encode=encode)["concat"]
    assert cond.shape == (2, 4, 8, 8)  # latent channels + 1
    assert torch.equal(seen["x"], image * (1 - mask))  # holes are 0 = grey
    assert torch.equal(cond[:, 3:], torch.nn.functional.max_pool2d(mask, 4))  # "max": any hole pixel counts
    area = inpaint(mask_resize="area")({"image": image, "mask": mask}, 2, CPU, encode=encode)["concat"]
    assert torch.equal(area[:, 3:], torch.nn.functional.avg_pool2d(mask, 4))


def test_inpaint_masks_are_binarised_at_one_half_and_drawn_per_sample():
    model = inpaint()
    image = hr_images(1)
    soft = torch.full((1, 1, 32, 32), 0.49)
    soft[..., :16] = 0.5
    cond = model({"image": image, "mask": soft}, 1, CPU, encode=lambda x: x)["concat"]
    assert torch.equal(cond[0, 3, :, :16], torch.ones(32, 16)) and torch.equal(cond[0, 3, :, 16:], torch.zeros(32, 16))
    raw = model.prepare({"image": hr_images(3)}, stream_generators([7, 8, 9], 3))
    again = model.prepare({"image": hr_images(1)}, stream_generators([8], 3))
    assert raw["mask"].shape == (3, 1, 32, 32) and torch.equal(raw["mask"][1], again["mask"][0])
    with pytest.raises(LdmkitError, match="encoder"):
        model(raw, 3, CPU)


@pytest.mark.parametrize("kind", ["low_res", "inpaint"])
def test_null_condition_broadcasts_in_dropout_and_guidance(kind):
    model = low_res() if kind == "low_res" else inpaint()
    raw = model.prepare({"image": hr_images(2)}, stream_generators([0, 1], 3))
    cond = model(raw, 2, CPU, encode=lambda x: torch.nn.functional.avg_pool2d(x, 4))
    dropped = model.drop(cond, torch.tensor([True, False]))["concat"]
    assert torch.equal(dropped[0], cond["concat"][0]) and not dropped[1].any()
    calls = []

    def unet(x, t, concat=None):
        calls.append(concat)
        return x + concat.mean(dim=1, keepdim=True)

    x = torch.zeros(2, 1, 8, 8)
    out = classifier_free_guidance(unet, cond, model.null(2, CPU), 3.0)(x, torch.zeros(2))
    assert calls[-1].shape == (4, *cond["concat"].shape[1:]) and not calls[-1][:2].any()
    assert torch.allclose(out, 3.0 * cond["concat"].mean(dim=1, keepdim=True))

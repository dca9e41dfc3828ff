"""The concatenating conditioners of super-resolution (low_res) and inpainting."""

import pytest
import torch
import torch.nn.functional as F

from ldmkit.conditioning import ConditioningConfig, build_conditioner
from ldmkit.conditioning.sections import InpaintConfig, LowResConfig
from ldmkit.errors import LdmkitError, ShapeError
from ldmkit.sampling.guidance import classifier_free_guidance
from ldmkit.training.ldm import drop

CPU = torch.device("cpu")


def low_res(**kw):
    return build_conditioner(ConditioningConfig(kind="low_res", low_res=LowResConfig(**kw)))


def inpaint(**kw):
    return build_conditioner(ConditioningConfig(kind="inpaint", inpaint=InpaintConfig(**kw)))


def hr_images(b=4, size=32):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def hole_masks(b=2, size=32):
    mask = torch.zeros(b, 1, size, size)
    mask[:, :, 8:20, 4:30] = 1
    return mask


def avg_pool_encoder(x):  # a stand-in f = 4 first stage: average pooling, 3 latent channels
    return F.avg_pool2d(x, 4)


def test_low_res_concatenates_the_lr_image_as_is():
    model = low_res()
    assert model.concat_channels == 3
    lr = torch.rand(4, 3, 8, 8) * 2 - 1
    assert torch.equal(model(lr)["concat"], lr)
    with pytest.raises(ShapeError, match=r"\(B, 3, H, W\) tensor, got \(3, 8, 8\)"):
        model(lr[0])  # one image is read by ldmkit.pipeline.conditions
    with pytest.raises(ShapeError, match="low-resolution image must be a"):
        model(None)


def test_low_res_rescales_to_the_latent_size_of_a_pixel_space_model():
    model = low_res(stages=2, multiplier=2.0)  # LR 8 px -> 32 px maps for an identity first stage
    cond = model(torch.zeros(2, 3, 8, 8))
    assert cond["concat"].shape == (2, 3, 32, 32)


def test_inpaint_encodes_the_masked_image_and_appends_the_mask():
    model = inpaint()
    image, mask = hr_images(2), hole_masks(2)
    seen = {}

    def encode(x):
        seen["x"] = x
        return avg_pool_encoder(x)

    cond = model({"image": image, "mask": mask}, encode=encode)["concat"]
    assert cond.shape == (2, 4, 8, 8)  # latent channels + 1
    assert torch.equal(seen["x"], image * (1 - mask))  # holes are 0 = grey
    assert torch.equal(cond[:, 3:], F.max_pool2d(mask, 4))  # "max": any hole pixel counts
    area = inpaint(mask_resize="area")({"image": image, "mask": mask}, encode=encode)["concat"]
    assert torch.equal(area[:, 3:], F.avg_pool2d(mask, 4))


def test_inpaint_needs_the_encoder_and_one_mask_per_image():
    model = inpaint()
    image, mask = hr_images(2), hole_masks(2)
    with pytest.raises(LdmkitError, match="encoder"):
        model({"image": image, "mask": mask})
    with pytest.raises(ShapeError, match="one mask of the image's size per image"):
        model({"image": image, "mask": mask[:1]}, encode=avg_pool_encoder)
    with pytest.raises(ShapeError, match="one mask of the image's size per image"):
        model({"image": image, "mask": mask[..., :16]}, encode=avg_pool_encoder)
    with pytest.raises(LdmkitError, match=r'the inpainting condition is \{"image"'):
        model(image, encode=avg_pool_encoder)


@pytest.mark.parametrize("kind", ["low_res", "inpaint"])
def test_null_condition_broadcasts_in_dropout_and_guidance(kind):
    model = low_res() if kind == "low_res" else inpaint()
    raw = torch.rand(2, 3, 8, 8) * 2 - 1 if kind == "low_res" else {"image": hr_images(2), "mask": hole_masks(2)}
    cond = model(raw, encode=avg_pool_encoder)
    dropped = drop(cond, model.null(2, CPU), torch.tensor([True, False]))["concat"]
    assert torch.equal(dropped[0], cond["concat"][0]) and not dropped[1].any()
    calls = []

    def unet(x, t, concat=None):
        calls.append(concat)
        return x + concat.mean(dim=1, keepdim=True)

    x = torch.zeros(2, 1, 8, 8)
    out = classifier_free_guidance(unet, cond, model.null(2, CPU), 3.0)(x, torch.zeros(2))
    assert calls[-1].shape == (4, *cond["concat"].shape[1:]) and not calls[-1][:2].any()
    assert torch.allclose(out, 3.0 * cond["concat"].mean(dim=1, keepdim=True))

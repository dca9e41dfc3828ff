import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.checkpoint import save_model_file
from ldmkit.cli import main
from ldmkit.conditioning import ConditioningConfig
from ldmkit.config import to_dict
from ldmkit.data.images import to_uint8
from ldmkit.errors import ConfigError, ShapeError
from ldmkit.pipeline import read_params
from ldmkit.pipeline.checkpoint import KIND, ldm_tensors
from ldmkit.pipeline.generate import Pipeline
from ldmkit.pipeline.inpaint import inpaint, inpaint_tensor
from ldmkit.pipeline.model import LatentDiffusion, LDMConfig
from ldmkit.unet.config import UNetConfig


def tiny_inpainter(kind: str = "inpaint") -> LatentDiffusion:
    """KL-f4 first stage + a small UNet reading the encoded masked image and the mask (4 + 5 channels)."""
    torch.manual_seed(0)
    cfg = LDMConfig(first_stage=AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 1, 1), num_res_blocks=1),
                    unet=UNetConfig(in_channels=4 + (5 if kind == "inpaint" else 3), out_channels=4,
                                    model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                                    attention_resolutions=(), num_heads=2),
                    conditioning=ConditioningConfig(kind=kind), image_size=32)
    return LatentDiffusion(cfg).eval()


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(tiny_inpainter())


def random_image(h, w, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def stroke_mask(h, w, low=0, high=255):
    mask = np.full((h, w), low, np.uint8)
    mask[h // 4: h // 2, 2: w - 3] = high
    mask[:, w // 3: w // 3 + 4] = high
    return Image.fromarray(mask)


def test_unmasked_pixels_are_kept_bit_exactly_at_any_size(pipe):
    for h, w in ((27, 35), (32, 32), (9, 50)):
        image, mask = random_image(h, w), stroke_mask(h, w)
        out = inpaint(pipe, image, mask, steps=2)
        assert out.size == image.size
        original, result, hole = np.asarray(image), np.asarray(out), np.asarray(mask) >= 128
        assert np.array_equal(result[~hole], original[~hole])
        assert (result[hole] != original[hole]).mean() > 0.5  # the hole was filled, not copied


def test_strength_starts_from_the_image_itself(pipe):
    """img2img with an inpainting model: strength 1 is the default start (pure noise); below it the hole
    starts from what it holds, so at 0.3 it stays closer to that than the default fill; 0 decodes the image."""
    image, mask = random_image(16, 16), stroke_mask(16, 16)
    hole, original = np.asarray(mask) >= 128, np.asarray(image).astype(float)
    noise = np.asarray(inpaint(pipe, image, mask, steps=10, seed=1))
    assert np.array_equal(np.asarray(inpaint(pipe, image, mask, steps=10, seed=1, strength=1.0)), noise)
    low = inpaint(pipe, image, mask, steps=10, seed=1, strength=0.3)
    assert np.abs(np.asarray(low)[hole] - original[hole]).mean() < np.abs(noise[hole] - original[hole]).mean()
    assert json.loads(low.info["ldmkit"])["strength"] == 0.3
    kept = np.asarray(inpaint(pipe, image, mask, steps=10, seed=1, strength=0.0))  # no step: the first stage's
    decoded = pipe.decode(pipe.encode(torch.from_numpy(original).permute(2, 0, 1)[None].float() / 127.5 - 1))
    assert np.abs(kept[hole] - to_uint8(decoded[0])[hole].astype(float)).max() <= 1  # reconstruction in the hole
    with pytest.raises(ConfigError, match=r"strength must be in \[0, 1\]"):
        inpaint(pipe, image, mask, steps=2, strength=1.5)


def test_the_mask_is_binarised_at_one_half(pipe):
    image = random_image(16, 16)
    mask = stroke_mask(16, 16, low=127, high=128)  # 127: keep, 128: fill
    result, original, hole = np.asarray(inpaint(pipe, image, mask, steps=2)), np.asarray(image), np.asarray(mask) == 128
    assert np.array_equal(result[~hole], original[~hole]) and not np.array_equal(result[hole], original[hole])


def test_batches_keep_their_pixels_and_accept_guidance(pipe):
    images = torch.rand(2, 3, 16, 24) * 2 - 1
    masks = torch.zeros(2, 1, 16, 24)
    masks[0, :, 4:9], masks[1, :, :, 10:] = 1, 1
    out = inpaint_tensor(pipe, images, masks, steps=2, guidance=2.0)  # the null condition broadcasts
    assert torch.equal(out[masks.expand_as(out) == 0], images[masks.expand_as(images) == 0])
    direct = pipe(n=2, condition={"image": images[0], "mask": masks[0]}, steps=2, guidance=2.0)
    assert [im.size for im in direct] == [(24, 16)] * 2  # the size follows the condition


def test_bad_inputs_fail_clearly(pipe):
    with pytest.raises(ShapeError, match="mask of the image's size"):
        inpaint(pipe, random_image(16, 16), stroke_mask(16, 20))
    with pytest.raises(ConfigError, match="inpainting model"):
        inpaint(Pipeline(tiny_inpainter("low_res")), random_image(16, 16), stroke_mask(16, 16))
    # f = 4 and one UNet downsampling to 32 channels: 8 x 8 px would leave its lowest level 1 x 1 pixel
    with pytest.raises(ShapeError, match="8x8 px is too small for this model.*make one side 16 px or more"):
        pipe.latents([0], {"image": torch.zeros(1, 3, 8, 8), "mask": torch.zeros(1, 1, 8, 8)}, 2, height=8, width=8)
    # ... so inpainting pads such an image (as it pads to the model's multiple) and keeps its pixels
    image, mask = random_image(8, 8), stroke_mask(8, 8)
    out = np.asarray(inpaint(pipe, image, mask, steps=2))
    keep = np.asarray(mask) < 128
    assert out.shape == (8, 8, 3) and np.array_equal(out[keep], np.asarray(image)[keep])


def test_cli_inpaints_a_file(tmp_path):
    model = tiny_inpainter()
    save_model_file(tmp_path / "inpaint.safetensors", ldm_tensors(model), KIND, to_dict(model.config))
    random_image(21, 30).save(tmp_path / "photo.png")
    stroke_mask(21, 30).save(tmp_path / "mask.png")
    code = main(["inpaint", str(tmp_path / "photo.png"), str(tmp_path / "mask.png"), "--model",
                 str(tmp_path / "inpaint.safetensors"), "--out", str(tmp_path / "filled.png"), "--steps", "2",
                 "--device", "cpu"])
    assert code == 0
    with Image.open(tmp_path / "filled.png") as out, Image.open(tmp_path / "photo.png") as original:
        keep = np.asarray(stroke_mask(21, 30)) < 128
        assert np.array_equal(np.asarray(out)[keep], np.asarray(original)[keep])
    params = read_params(tmp_path / "filled.png")  # the same generation metadata as `ldmkit sample`
    assert params["task"] == "inpaint" and params["steps"] == 2 and params["seed"] == 0
    assert params["checkpoint_sha256"] == hashlib.sha256((tmp_path / "inpaint.safetensors").read_bytes()).hexdigest()
    assert params["inputs"]["mask_sha256"] == hashlib.sha256((tmp_path / "mask.png").read_bytes()).hexdigest()
    assert main(["sample", "--from-png", str(tmp_path / "filled.png"), "--out", str(tmp_path / "again")]) == 2
    assert main(["inpaint", str(tmp_path / "photo.png"), str(tmp_path / "none.png"), "--model",
                 str(tmp_path / "inpaint.safetensors"), "--out", str(tmp_path / "x.png")]) == 2

"""img2img (SDEdit), inpainting by blending with any model, and negative conditions, through the Pipeline and CLI."""

import numpy as np
import pytest
import torch
from PIL import Image

import ldmkit
from ldmkit.cli import main
from ldmkit.config import from_dict
from ldmkit.errors import ConfigError, ShapeError
from ldmkit.pipeline import LatentDiffusion, LDMConfig, Pipeline, read_params

from .conftest import tiny_ldm

UNET = {"in_channels": 3, "out_channels": 3, "model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
        "attention_resolutions": [2], "num_heads": 2}
SAMPLERS = ["ddpm", "ddim", "plms", "euler", "euler_a", "heun", "dpmpp_2m"]


def pixel_model(conditioning: dict | None = None, **unet) -> LatentDiffusion:
    """A 16 px pixel-space model (identity first stage) with random output layers."""
    torch.manual_seed(0)
    cfg = from_dict(LDMConfig, {"unet": {**UNET, **unet}, "conditioning": conditioning or {}, "image_size": 16})
    model = LatentDiffusion(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and p.abs().max() == 0:  # zero-initialised layers (output, attention out): make them matter
                p.normal_(0, 0.05)
    return model.eval()


def class_model() -> LatentDiffusion:
    return pixel_model({"kind": "class", "class_label": {"num_classes": 3, "embed_dim": 32}},
                       use_spatial_transformer=True, context_dim=32)


def photo(seed: int = 0, size: int = 16) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int64)


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(pixel_model())


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_strength_0_returns_the_image_and_strength_1_ignores_it(pipe, sampler):
    image = photo()
    kept = pipe(n=1, steps=4, sampler=sampler, init_image=image, strength=0.0)[0]
    assert np.array_equal(pixels(kept), pixels(image))  # pixel space: the input itself
    ignored = pipe(n=1, steps=4, sampler=sampler, init_image=image, strength=1.0, seed=3)[0]
    plain = pipe(n=1, steps=4, sampler=sampler, seed=3)[0]
    assert np.array_equal(pixels(ignored), pixels(plain))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_strength_runs_that_share_of_the_steps_from_the_noised_image(pipe, sampler):
    image = photo()
    steps = []
    half = pipe(n=1, steps=8, sampler=sampler, init_image=image, strength=0.5,
                callback=lambda info: steps.append(info["i"]))[0]
    assert max(steps) + 1 == 4  # int(8 * 0.5) of the sampler's 8 steps
    plain = pipe(n=1, steps=8, sampler=sampler)[0]
    closer = np.abs(pixels(half) - pixels(image)).mean() < np.abs(pixels(plain) - pixels(image)).mean()
    assert closer and not np.array_equal(pixels(half), pixels(image))


def test_latent_model_at_strength_0_gives_the_first_stage_reconstruction():
    pipe = Pipeline(tiny_ldm())
    image = photo(size=16)
    kept = pipe(n=1, steps=4, init_image=image, strength=0.0)[0]
    from ldmkit.data.images import to_pil, to_tensor

    reconstruction = to_pil(pipe.decode(pipe.encode(to_tensor(image)[None]))[0])
    assert np.array_equal(pixels(kept), pixels(reconstruction))


def test_a_mask_keeps_every_pixel_outside_it_with_any_model(pipe):
    image = photo()
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 2:9] = 255
    out = pipe(n=2, steps=4, sampler="euler_a", init_image=image, strength=1.0, mask=Image.fromarray(mask))
    for result in out:
        keep = mask == 0
        assert np.array_equal(pixels(result)[keep], pixels(image)[keep])
        assert not np.array_equal(pixels(result)[~keep], pixels(image)[~keep])
    assert json_params(out[0])["strength"] == 1.0 and json_params(out[0])["mask"] == "<image 16x16>"


def json_params(image: Image.Image) -> dict:
    import json

    return json.loads(image.info["ldmkit"])


def test_the_init_image_sets_the_size_and_bad_inputs_are_refused(pipe):
    assert pipe(n=1, steps=2, init_image=photo(size=24), strength=0.5)[0].size == (24, 24)
    with pytest.raises(ConfigError, match="strength must be in \\[0, 1\\]"):
        pipe(n=1, steps=2, init_image=photo(), strength=1.5)
    with pytest.raises(ConfigError, match="strength needs an init image"):
        pipe(n=1, steps=2, strength=0.5)
    with pytest.raises(ConfigError, match="a mask needs an init image"):
        pipe(n=1, steps=2, mask=photo())
    with pytest.raises(ShapeError, match="the mask is 8x8 px but the init image 16x16"):
        pipe(n=1, steps=2, init_image=photo(), mask=photo(size=8))
    with pytest.raises(ConfigError, match="sets the image size to 16x16"):
        pipe(n=1, steps=2, init_image=photo(), height=32)
    with pytest.raises(ShapeError, match=r"the condition or init image is 15x15 px, which sets the image size: "
                                         r"height 15 px is not a multiple of 2.*\(resize it\)"):
        pipe(n=1, steps=2, init_image=photo(size=15))


def test_negative_class_replaces_the_unconditional_branch():
    pipe = Pipeline(class_model())
    plain = pipe(n=1, steps=3, condition=1, guidance=3.0)[0]
    negative = pipe(n=1, steps=3, condition=1, guidance=3.0, negative=2)[0]
    assert not np.array_equal(pixels(plain), pixels(negative))
    assert json_params(negative)["negative"] == 2
    null = pipe(n=1, steps=3, condition=1, guidance=3.0, negative=[None])[0]  # the null class: plain guidance
    assert np.array_equal(pixels(plain), pixels(null))
    with pytest.raises(ConfigError, match="set guidance above 1"):
        pipe(n=1, steps=3, condition=1, negative=2)
    with pytest.raises(ConfigError, match="has none"):
        Pipeline(pixel_model())(n=1, steps=2, guidance=1.0, negative="x")


def test_cli_img2img_with_negative_class_regenerates_from_its_png(tmp_path):
    from ldmkit.checkpoint import save_model_file
    from ldmkit.config import to_dict
    from ldmkit.pipeline.checkpoint import KIND, ldm_tensors

    model = class_model()
    save_model_file(tmp_path / "m.safetensors", ldm_tensors(model), KIND, to_dict(model.config))
    photo(5).save(tmp_path / "init.png")
    out = tmp_path / "out"
    assert main(["sample", str(tmp_path / "m.safetensors"), "--class", "1", "--negative-class", "0", "--guidance",
                 "2", "--init-image", str(tmp_path / "init.png"), "--strength", "0.6", "--n", "2", "--steps", "5",
                 "--out", str(out)]) == 0
    params = read_params(out / "000001.png")
    assert params["strength"] == 0.6 and params["negative"] == 0 and params["inputs"]["init_image"].endswith("init.png")
    again = tmp_path / "again"
    assert main(["sample", "--from-png", str(out / "000001.png"), "--out", str(again)]) == 0
    assert np.array_equal(pixels(Image.open(out / "000001.png")), pixels(Image.open(again / "000001.png")))
    photo(6).save(tmp_path / "init.png")  # the init image changed: the PNG cannot be regenerated from it
    assert main(["sample", "--from-png", str(out / "000001.png"), "--out", str(again)]) == 2


def test_python_api_loads_and_takes_the_same_options(tmp_path):
    from ldmkit.checkpoint import save_model_file
    from ldmkit.config import to_dict
    from ldmkit.pipeline.checkpoint import KIND, ldm_tensors

    model = class_model()
    save_model_file(tmp_path / "m.safetensors", ldm_tensors(model), KIND, to_dict(model.config))
    pipe = ldmkit.load(tmp_path / "m.safetensors", device="cpu")
    images = pipe(n=2, steps=2, condition=[0, 1], negative=2, guidance=2.0, init_image=photo(), strength=0.5)
    assert [im.size for im in images] == [(16, 16)] * 2

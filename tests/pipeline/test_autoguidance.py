"""Autoguidance through ldmkit.load, the Pipeline and `ldmkit sample --guide`: a weaker model of one latent space."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import ldmkit
from ldmkit.checkpoint import save_model_file
from ldmkit.cli import main
from ldmkit.config import to_dict
from ldmkit.errors import ConfigError
from ldmkit.pipeline import LatentDiffusion, read_params
from ldmkit.pipeline.checkpoint import KIND, ldm_tensors

from .conftest import tiny_ldm
from .test_img2img import class_model


def save(model: LatentDiffusion, path) -> str:
    save_model_file(path, ldm_tensors(model), KIND, to_dict(model.config))
    return str(path)


def weaker(model: LatentDiffusion, seed: int = 1) -> LatentDiffusion:
    """The same model with other UNet weights (same first stage and schedule): a stand-in for an early checkpoint."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("autoguidance")
    return save(tiny_ldm(), folder / "model.safetensors"), save(weaker(tiny_ldm()), folder / "guide.safetensors")


def test_guidance_mixes_in_the_guide_and_guidance_1_ignores_it(files):
    model, guide = files
    plain, guided = ldmkit.load(model, device="cpu"), ldmkit.load(model, device="cpu", guide=guide)
    z = plain.latents([0, 1], steps=4, sampler="euler_a")
    assert torch.equal(guided.latents([0, 1], steps=4, sampler="euler_a"), z)
    mixed = guided.latents([0, 1], steps=4, sampler="euler_a", guidance=2.0)
    assert not torch.equal(mixed, z) and torch.isfinite(mixed).all()
    with pytest.raises(ConfigError, match="unconditional .* or give a guide model"):
        plain(n=1, steps=2, guidance=2.0)
    assert "guide" not in read_params_of(guided(n=1, steps=2)[0])  # guidance 1: the guide plays no part
    assert read_params_of(guided(n=1, steps=2, guidance=2.0)[0])["guide"]["checkpoint"] == guide


def read_params_of(image) -> dict:
    import json

    return json.loads(image.info["ldmkit"])


def test_feature_caching_reaches_the_guide_too(files):
    model, guide = files
    pipe = ldmkit.load(model, device="cpu", guide=guide)

    def z(interval=None):
        return pipe.latents([0], steps=6, sampler="ddim", guidance=2.0, cache_interval=interval)

    plain = z()
    torch.testing.assert_close(z(1), plain, atol=1e-5, rtol=0)
    assert not torch.equal(z(3), plain)


def test_a_guide_of_another_latent_space_is_refused_by_name(tmp_path, files):
    model, _ = files
    other_first_stage = save(tiny_ldm(seed=1), tmp_path / "other.safetensors")
    with pytest.raises(ConfigError, match="another first stage"):
        ldmkit.load(model, device="cpu", guide=other_first_stage)
    v = tiny_ldm()
    v.config = dataclasses.replace(v.config, diffusion=dataclasses.replace(v.config.diffusion, prediction="v"))
    with pytest.raises(ConfigError, match="diffusion.prediction 'v', the model 'eps'"):
        ldmkit.load(model, device="cpu", guide=save(v, tmp_path / "v.safetensors"))
    cfg = tiny_ldm().config  # a first stage of another width: the field that differs is named
    wide = LatentDiffusion(dataclasses.replace(cfg, first_stage=dataclasses.replace(cfg.first_stage, ch=64)))
    with pytest.raises(ConfigError, match="has first_stage.ch 64, the model 32; a guide must share"):
        ldmkit.load(model, device="cpu", guide=save(wide, tmp_path / "wide.safetensors"))


def test_a_negative_condition_and_a_guide_are_one_or_the_other(tmp_path):
    model = save(class_model(), tmp_path / "class.safetensors")
    pipe = ldmkit.load(model, device="cpu", guide=save(weaker(class_model()), tmp_path / "guide.safetensors"))
    assert pipe(n=1, steps=2, condition=1, guidance=2.0)[0].size == (16, 16)  # a conditional model, guided by its guide
    with pytest.raises(ConfigError, match="drop the negative or the guide"):
        pipe(n=1, steps=2, condition=1, negative=2, guidance=2.0)


def test_cli_records_the_guide_and_from_png_regenerates_with_it(tmp_path, files):
    model, guide = files
    out = tmp_path / "samples"
    assert main(["sample", model, "--guide", guide, "--guidance", "2", "--n", "2", "--steps", "3", "--device", "cpu",
                 "--dtype", "float32", "--out", str(out)]) == 0
    params = read_params(out / "000001.png")
    assert params["guide"]["checkpoint"] == guide and params["guidance"] == 2.0
    assert main(["sample", "--from-png", str(out / "000001.png"), "--out", str(tmp_path / "again")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / "000001.png")),
                          np.asarray(Image.open(out / "000001.png")))
    unguided = tmp_path / "unguided"
    assert main(["sample", model, "--n", "2", "--steps", "3", "--device", "cpu", "--dtype", "float32",
                 "--out", str(unguided)]) == 0
    unguided_image = np.asarray(Image.open(unguided / "000001.png"))
    assert not np.array_equal(unguided_image, np.asarray(Image.open(out / "000001.png")))


def test_a_missing_guide_is_one_line(tmp_path, files, cli_error):
    model, _ = files
    message = cli_error(["sample", model, "--guide", tmp_path / "nope", "--guidance", "2", "--out", tmp_path / "s"])
    assert "the guide model" in message and "does not exist" in message


def test_a_guide_without_guidance_is_one_line(tmp_path, files, cli_error):
    model, guide = files
    message = cli_error(["sample", model, "--guide", guide, "--out", tmp_path / "s"])
    assert "--guide acts through --guidance" in message


def test_from_png_refuses_a_changed_guide(tmp_path, cli_error):
    model, guide = save(tiny_ldm(), tmp_path / "m.safetensors"), save(weaker(tiny_ldm()), tmp_path / "g.safetensors")
    assert main(["sample", model, "--guide", guide, "--guidance", "2", "--n", "1", "--steps", "2", "--device", "cpu",
                 "--out", str(tmp_path / "s")]) == 0
    save(weaker(tiny_ldm(), seed=2), tmp_path / "g.safetensors")
    message = cli_error(["sample", "--from-png", str(tmp_path / "s" / "000000.png"), "--out", str(tmp_path / "r")])
    assert "the guide model" in message and "has changed" in message


@pytest.mark.parametrize("task", ["upscale", "inpaint"])
def test_upscale_and_inpaint_take_a_guide_and_record_it(tmp_path, task):
    from .test_inpaint import tiny_inpainter
    from .test_upscale import tiny_sr

    build = tiny_sr if task == "upscale" else tiny_inpainter
    model, guide = save(build(), tmp_path / "m.safetensors"), save(weaker(build()), tmp_path / "g.safetensors")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    inputs = [str(tmp_path / "in.png")] + ([str(tmp_path / "mask.png")] if task == "inpaint" else [])
    common = ["--model", model, "--steps", "3", "--guidance", "2", "--device", "cpu", "--dtype", "float32"]
    assert main([task, *inputs, *common, "--guide", guide, "--out", str(tmp_path / "guided.png")]) == 0
    assert main([task, *inputs, *common, "--out", str(tmp_path / "cfg.png")]) == 0
    guided, cfg = (read_params(tmp_path / f"{name}.png") for name in ("guided", "cfg"))
    assert guided["guide"]["checkpoint"] == guide and "guide" not in cfg
    pixels = [np.asarray(Image.open(tmp_path / f"{name}.png")) for name in ("guided", "cfg")]
    assert not np.array_equal(*pixels)

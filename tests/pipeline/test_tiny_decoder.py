"""Decoding with a tiny decoder (--tiny-decoder): the Pipeline, the CLI, the metadata and --from-png."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ldmkit
from ldmkit.autoencoder.tiny import TinyDecoder, TinyDecoderConfig
from ldmkit.cli import main
from ldmkit.interop.tiny_decoder import save_tiny_decoder
from ldmkit.pipeline import read_params

from .conftest import tiny_ldm
from .test_autoguidance import save


def tiny_for(model, blocks=(1, 1), scale=None, seed=0) -> TinyDecoder:
    torch.manual_seed(seed)
    return TinyDecoder(TinyDecoderConfig(model.config.first_stage.latent_channels, 16, blocks, scale)).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    model = tiny_ldm()
    save_tiny_decoder(tiny_for(model, scale=model.config.scale_factor), folder / "tiny.safetensors")
    return save(model, folder / "model.safetensors"), str(folder / "tiny.safetensors")


def test_the_tiny_decoder_decodes_the_sampled_latents(files):
    model, tiny = files
    pipe, plain = ldmkit.load(model, device="cpu", tiny_decoder=tiny), ldmkit.load(model, device="cpu")
    z = pipe.latents([0], steps=3)
    assert torch.equal(z, plain.latents([0], steps=3))  # the same latent, another rendering of it
    decoder = tiny_for(tiny_ldm(), scale=0.5)
    with torch.no_grad():
        torch.testing.assert_close(pipe.decode(z), decoder(z).clamp(-1, 1))
    assert not torch.allclose(pipe.decode(z), plain.decode(z))
    record = read_params_of(pipe(n=1, steps=2)[0])["tiny_decoder"]
    assert record["path"] == record["file"] == str(Path(tiny).resolve()) and len(record["sha256"]) == 64


def read_params_of(image) -> dict:
    import json

    return json.loads(image.info["ldmkit"])


def test_cli_records_it_and_from_png_decodes_with_it_again(tmp_path, files):
    model, tiny = files
    out = tmp_path / "s"
    assert main(["sample", model, "--tiny-decoder", tiny, "--n", "2", "--steps", "2", "--device", "cpu",
                 "--dtype", "float32", "--out", str(out)]) == 0
    assert read_params(out / "000001.png")["tiny_decoder"]["path"] == str(Path(tiny).resolve())
    assert main(["sample", "--from-png", str(out / "000001.png"), "--out", str(tmp_path / "again")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / "000001.png")),
                          np.asarray(Image.open(out / "000001.png")))


def test_a_tiny_decoder_for_another_first_stage_is_one_line(tmp_path, files, cli_error):
    model, _ = files
    save_tiny_decoder(tiny_for(tiny_ldm(), blocks=(1, 1, 1)), tmp_path / "f4.safetensors")
    message = cli_error(["sample", model, "--tiny-decoder", tmp_path / "f4.safetensors", "--out", tmp_path / "s"])
    assert "decodes 4-channel latents 4x up, this model's first stage 4-channel latents 2x" in message
    save_tiny_decoder(tiny_for(tiny_ldm(), scale=0.18215), tmp_path / "sd.safetensors")
    message = cli_error(["sample", model, "--tiny-decoder", tmp_path / "sd.safetensors", "--out", tmp_path / "s"])
    assert "trained on latents scaled by 0.18215, this model samples them scaled by 0.5" in message
    message = cli_error(["sample", model, "--tiny-decoder", tmp_path / "none", "--out", tmp_path / "s"])
    assert "the tiny decoder" in message and "does not exist" in message
    (tmp_path / "empty").mkdir()  # (eval names the decoder's file in its output folder first)
    for command in (["sample", model, "--out", tmp_path / "s"], ["eval", model, "--n", "1", "--ref", "openmoji"]):
        message = cli_error([*command, "--tiny-decoder", tmp_path / "empty"])
        assert "is a folder without config.json, so not a diffusers AutoencoderTiny folder" in message


def test_from_png_refuses_a_changed_tiny_decoder(tmp_path, files, cli_error):
    model, _ = files
    tiny = tmp_path / "t.safetensors"
    save_tiny_decoder(tiny_for(tiny_ldm(), scale=0.5), tiny)
    assert main(["sample", model, "--tiny-decoder", str(tiny), "--n", "1", "--steps", "2", "--device", "cpu",
                 "--out", str(tmp_path / "s")]) == 0
    save_tiny_decoder(tiny_for(tiny_ldm(), scale=0.5, seed=1), tiny)
    message = cli_error(["sample", "--from-png", str(tmp_path / "s" / "000000.png"), "--out", str(tmp_path / "r")])
    assert "the tiny decoder" in message and "has changed" in message


def test_a_pixel_space_model_has_no_decoder_to_replace():
    import dataclasses

    from ldmkit.autoencoder.config import AutoencoderConfig
    from ldmkit.errors import ConfigError
    from ldmkit.pipeline import LatentDiffusion, Pipeline

    cfg = tiny_ldm().config
    unet = dataclasses.replace(cfg.unet, in_channels=3, out_channels=3)
    pixels = LatentDiffusion(dataclasses.replace(cfg, first_stage=AutoencoderConfig(kind="identity"), unet=unet,
                                                 scale_factor=1.0))
    with pytest.raises(ConfigError, match="samples pixels .*no decoder to replace"):
        Pipeline(pixels).use_tiny_decoder(TinyDecoder(TinyDecoderConfig(blocks=(1,))), {"path": "t"})


def test_large_latents_decode_in_tiles_of_the_recorded_size(files):
    model, tiny = files
    pipe = ldmkit.load(model, device="cpu", tiny_decoder=tiny)
    seen = []
    decode = pipe._decode
    pipe._decode = lambda z: seen.append(tuple(z.shape[-2:])) or decode(z)
    pipe.set_decode_tile(16)
    image = pipe(n=1, steps=2, height=48, width=48)[0]  # a 24 x 24 latent: two tiles of 16 per side
    assert seen == [(16, 16)] * 4 and read_params_of(image)["decode_tile"] == 16


@pytest.mark.parametrize("task", ["upscale", "inpaint"])
def test_upscale_and_inpaint_decode_with_it_and_record_it(tmp_path, task):
    from .test_inpaint import tiny_inpainter
    from .test_upscale import tiny_sr

    model = (tiny_sr if task == "upscale" else tiny_inpainter)()
    path = save(model, tmp_path / "m.safetensors")
    save_tiny_decoder(tiny_for(model, blocks=(1, 1, 1), scale=model.config.scale_factor), tmp_path / "t.safetensors")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "mask.png")
    inputs = [str(tmp_path / "in.png")] + ([str(tmp_path / "mask.png")] if task == "inpaint" else [])
    common = [*inputs, "--model", path, "--steps", "2", "--device", "cpu", "--dtype", "float32"]
    tiny = ["--tiny-decoder", str(tmp_path / "t.safetensors")]
    assert main([task, *common, *tiny, "--out", str(tmp_path / "a.png")]) == 0
    assert main([task, *common, "--out", str(tmp_path / "b.png")]) == 0
    assert read_params(tmp_path / "a.png")["tiny_decoder"]["file"] == str(tmp_path / "t.safetensors")
    assert "tiny_decoder" not in read_params(tmp_path / "b.png")
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))

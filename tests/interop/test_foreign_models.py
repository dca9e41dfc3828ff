"""Every CLI command that takes a model, and `ldmkit.load`, read an original CompVis pair and a diffusers folder.

Each command is run on the foreign model directly and on its `ldmkit convert`ed folder: the
outputs must be identical (the conversion itself is checked against the original code in
test_compvis_fixtures.py and against diffusers in test_diffusers_folders.py).
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import ldmkit
from ldmkit.autoencoder import AutoencoderConfig
from ldmkit.cli import main
from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.interop.compvis_config import translate
from ldmkit.interop.compvis_weights import to_compvis
from ldmkit.interop.diffusers_folders import save_diffusers_folder
from ldmkit.interop.foreign_models import convert_foreign, load_foreign
from ldmkit.pipeline import LatentDiffusion, LDMConfig
from ldmkit.unet import UNET_PRESETS

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("LDMKIT_COMPVIS_FIXTURES", REPO / ".." / "shared" / "fixtures" / "compvis"))
FAST = ["--steps", "2", "--device", "cpu"]


def case(name: str) -> tuple[Path, Path]:
    folder = FIXTURES / name
    assert (folder / "model.ckpt").is_file(), f"CompVis fixtures missing at {folder}"
    return folder / "model.ckpt", folder / "config.yaml"


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def random_png(path: Path, h: int, w: int, seed: int = 0, grey: bool = False) -> Path:
    shape = (h, w) if grey else (h, w, 3)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def diffusers_folder(tmp_path, randomize) -> Path:
    """A tiny unconditional KL LDM written as a diffusers pipeline folder."""
    first = AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 2), num_res_blocks=1)
    model = randomize(LatentDiffusion(LDMConfig(first, UNET_PRESETS["tiny"], scale_factor=0.5, image_size=16)))
    return save_diffusers_folder(model, tmp_path / "diffusers")


def test_load_and_convert_read_a_diffusers_folder(diffusers_folder, tmp_path):
    model, source = load_foreign(diffusers_folder)
    assert source == diffusers_folder and model.config.scale_factor == 0.5
    target = convert_foreign(diffusers_folder, tmp_path / "converted")
    converted = ldmkit.load(target.parent, device="cpu")
    assert converted.config == model.config
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in converted.model.state_dict().items())
    with pytest.raises(ConfigError, match="carries its own configs"):
        ldmkit.load(diffusers_folder, device="cpu", config="model.yaml")
    with pytest.raises(CheckpointError, match="ldmkit model already"):
        convert_foreign(target, tmp_path / "again")
    with pytest.raises(CheckpointError, match="does not exist"):
        convert_foreign(tmp_path / "missing.ckpt", tmp_path / "again", config="model.yaml")


def test_sample_and_convert_commands_read_a_diffusers_folder(diffusers_folder, tmp_path, capsys):
    assert main(["convert", str(diffusers_folder), "--out", str(tmp_path / "converted")]) == 0
    assert main(["sample", str(diffusers_folder), "--n", "1", *FAST, "--out", str(tmp_path / "a")]) == 0
    assert main(["sample", str(tmp_path / "converted"), "--n", "1", *FAST, "--out", str(tmp_path / "b")]) == 0
    a, b = pixels(tmp_path / "a" / "000000.png"), pixels(tmp_path / "b" / "000000.png")
    assert a.shape == (16, 16, 3) and np.array_equal(a, b)
    capsys.readouterr()
    assert main(["sample", str(diffusers_folder), "--config", "x.yaml", "--out", str(tmp_path / "c")]) == 2
    assert "drop it" in capsys.readouterr().err


def test_upscale_reads_the_compvis_pair(tmp_path):
    ckpt, config = case("kl_concat_sr")  # SpatialRescaler x0.5 on a 16 px image -> 32 px output: factor 2
    assert main(["convert", str(ckpt), "--config", str(config), "--out", str(tmp_path / "converted")]) == 0
    low = random_png(tmp_path / "low.png", 12, 16)
    assert main(["upscale", str(low), "--model", str(ckpt), "--config", str(config), *FAST,
                 "--out", str(tmp_path / "a.png")]) == 0
    assert main(["upscale", str(low), "--model", str(tmp_path / "converted"), *FAST,
                 "--out", str(tmp_path / "b.png")]) == 0
    a, b = pixels(tmp_path / "a.png"), pixels(tmp_path / "b.png")
    assert a.shape == (24, 32, 3) and np.array_equal(a, b)


def compvis_inpainter(folder: Path) -> tuple[Path, Path]:
    """A tiny CompVis inpainting model (`__is_first_stage__`: encoded masked image + mask) as .ckpt + YAML."""
    ddconfig = {"double_z": False, "z_channels": 3, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    unet = {"image_size": 16, "in_channels": 7, "out_channels": 3, "model_channels": 32, "attention_resolutions": [2],
            "num_res_blocks": 1, "channel_mult": [1, 2], "num_heads": 2}
    data = {"model": {"target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": {
        "linear_start": 0.0015, "linear_end": 0.0205, "image_size": 16, "channels": 3, "conditioning_key": "concat",
        "cond_stage_config": "__is_first_stage__",
        "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": unet},
        "first_stage_config": {"target": "ldm.models.autoencoder.VQModelInterface",
                               "params": {"embed_dim": 3, "n_embed": 32, "ddconfig": ddconfig}}}}}
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(data))
    torch.manual_seed(0)
    model = LatentDiffusion(translate(data).config)
    torch.save({"state_dict": to_compvis(model), "global_step": 0}, folder / "model.ckpt")
    return folder / "model.ckpt", folder / "config.yaml"


def test_inpaint_reads_the_compvis_pair(tmp_path):
    ckpt, config = compvis_inpainter(tmp_path / "original")
    assert main(["convert", str(ckpt), "--config", str(config), "--out", str(tmp_path / "converted")]) == 0
    image = random_png(tmp_path / "photo.png", 20, 28)
    mask = np.zeros((20, 28), np.uint8)
    mask[4:12, 6:20] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    for model, out in ((str(ckpt.parent), "a.png"), (str(tmp_path / "converted"), "b.png")):  # pair found in folder
        assert main(["inpaint", str(image), str(tmp_path / "mask.png"), "--model", model, *FAST,
                     "--out", str(tmp_path / out)]) == 0
    a, b = pixels(tmp_path / "a.png"), pixels(tmp_path / "b.png")
    assert np.array_equal(a, b) and not np.array_equal(a, pixels(image))
    assert np.array_equal(a[mask < 128], pixels(image)[mask < 128])


def test_eval_reads_the_compvis_pair_and_a_diffusers_folder(diffusers_folder, tmp_path, monkeypatch, capsys):
    ckpt, config = case("vq_uncond_attention")
    for model in ([str(ckpt), "--config", str(config)], [str(diffusers_folder)]):
        assert main(["eval", *model, "--n", "2"]) == 2
        assert "give the reference with --ref" in capsys.readouterr().err
    monkeypatch.setenv("LDMKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "ref").mkdir()
    for i in range(4):
        random_png(tmp_path / "ref" / f"{i}.png", 32, 32, seed=i)
    assert main(["eval", str(ckpt), "--config", str(config), "--ref", str(tmp_path / "ref"), "--n", "4",
                 "--batch-size", "4", "--kid-subsets", "2", "--kid-subset-size", "2", "--ref-split", "all",
                 *FAST, "--out", str(tmp_path / "metrics")]) == 0
    result = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert result["settings"]["checkpoint"] == str(ckpt) and result["settings"]["resolution"] == 32


def test_export_diffusers_reads_the_compvis_pair(tmp_path):
    """CompVis -> diffusers: diffusers' LDMPipeline samples what ldmkit samples from the original pair."""
    diffusers = pytest.importorskip("diffusers")
    ckpt, config = case("vq_uncond_attention")
    assert main(["export-diffusers", str(ckpt), "--config", str(config), "--out", str(tmp_path / "out")]) == 0
    pipe = diffusers.LDMPipeline.from_pretrained(tmp_path / "out")
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=1, generator=torch.Generator().manual_seed(5), num_inference_steps=4,
                  output_type="np").images  # (1, H, W, 3) in [0, 1]
    ours = ldmkit.load(ckpt, device="cpu", config=config)
    images = ours.decode(ours.latents([5], steps=4, sampler="ddim"))  # (1, 3, H, W) in [-1, 1]
    torch.testing.assert_close(torch.from_numpy(theirs).permute(0, 3, 1, 2), images / 2 + 0.5, atol=1e-5, rtol=1e-5)
    assert ldmkit.load(tmp_path / "out", device="cpu").config == ours.config

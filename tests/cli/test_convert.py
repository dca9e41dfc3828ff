"""`ldmkit convert` and `ldmkit sample --config`: an original CompVis pair, converted or used directly."""

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ldmkit.cli import main

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("LDMKIT_COMPVIS_FIXTURES", REPO / ".." / "shared" / "fixtures" / "compvis"))


def test_convert_then_sample_equals_sampling_the_original(tmp_path, capsys):
    folder = FIXTURES / "vq_uncond_attention"
    ckpt, config = folder / "model.ckpt", folder / "config.yaml"
    assert ckpt.is_file(), f"CompVis fixtures missing at {folder}"
    assert main(["convert", str(ckpt), "--config", str(config), "--out", str(tmp_path / "model")]) == 0
    assert (tmp_path / "model" / "model.safetensors").is_file()
    common = ["--n", "1", "--steps", "2", "--device", "cpu"]
    assert main(["sample", str(tmp_path / "model"), *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["sample", str(ckpt), "--config", str(config), *common, "--out", str(tmp_path / "b")]) == 0
    a, b = (np.asarray(Image.open(tmp_path / d / "000000.png")) for d in "ab")
    assert a.shape == (32, 32, 3) and np.array_equal(a, b)


def test_convert_reports_a_bad_config(tmp_path, capsys):
    folder = FIXTURES / "vq_uncond_attention"
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  target: ldm.models.diffusion.ddpm.DDPM\n  params: {}\n")
    assert main(["convert", str(folder / "model.ckpt"), "--config", str(bad), "--out", str(tmp_path / "m")]) == 2
    assert "DDPM" in capsys.readouterr().err

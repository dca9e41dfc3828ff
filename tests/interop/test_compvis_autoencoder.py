"""CompVis first stages as ldmkit autoencoders: from an LDM pair or a first-stage-only pair, and in eval-autoencoder."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

from ldmkit.cli import main
from ldmkit.config import read_yaml
from ldmkit.errors import CheckpointError
from ldmkit.interop.compvis import load_compvis, read_state_dict
from ldmkit.interop.compvis_autoencoder import load_compvis_autoencoder

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("LDMKIT_COMPVIS_FIXTURES", REPO / ".." / "shared" / "fixtures" / "compvis"))


def case(name: str) -> Path:
    folder = FIXTURES / name
    assert (folder / "model.ckpt").is_file(), f"CompVis fixtures missing at {folder}"
    return folder


def first_stage_pair(tmp_path: Path, target: str = "ldm.models.autoencoder.VQModel", extra: dict | None = None):
    """vq_uncond_attention's first stage as a released first-stage model: top-level weights + loss.*."""
    folder = case("vq_uncond_attention")
    section = read_yaml((folder / "config.yaml").read_text())["model"]["params"]["first_stage_config"]
    prefix = "first_stage_model."
    state = {k[len(prefix):]: v for k, v in read_state_dict(folder / "model.ckpt").items() if k.startswith(prefix)}
    state["loss.discriminator.main.0.weight"] = torch.zeros(8, 3, 4, 4)  # dropped: training loss
    save_file({**state, **(extra or {})}, tmp_path / "vq.safetensors")
    (tmp_path / "vq.yaml").write_text(yaml.safe_dump({"model": {"target": target, "params": section["params"]}}))
    return tmp_path / "vq.safetensors", tmp_path / "vq.yaml"


def test_an_ldm_pair_gives_its_first_stage():
    folder = case("kl_crossattn_class")
    ours = load_compvis_autoencoder(folder / "model.ckpt", folder / "config.yaml")
    expected = load_compvis(folder / "model.ckpt", folder / "config.yaml").first_stage.state_dict()
    state = ours.state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected)


def test_an_ldm_safetensors_gives_the_same_first_stage_and_names_a_wrong_shape(tmp_path):
    folder = case("kl_crossattn_class")
    expected = load_compvis_autoencoder(folder / "model.ckpt", folder / "config.yaml").state_dict()
    state = read_state_dict(folder / "model.ckpt")
    save_file(state, tmp_path / "model.safetensors")
    state = load_compvis_autoencoder(tmp_path / "model.safetensors", folder / "config.yaml").state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected)
    shape = tuple(expected["decoder.conv_out.bias"].shape)
    save_file({**read_state_dict(folder / "model.ckpt"), "first_stage_model.decoder.conv_out.bias": torch.zeros(7)},
              tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=re.escape(f"wrong shape first_stage_model.decoder.conv_out.bias: "
                                                        f"checkpoint (7,) vs config {shape}")):
        load_compvis_autoencoder(tmp_path / "model.safetensors", folder / "config.yaml")


def test_a_first_stage_model_reproduces_the_golden_outputs(tmp_path):
    checkpoint, config = first_stage_pair(tmp_path)
    model = load_compvis_autoencoder(checkpoint, config)
    folder = case("vq_uncond_attention")
    spec = json.loads((folder / "case.json").read_text())
    inputs, expected = load_file(folder / "inputs.safetensors"), load_file(folder / "expected.safetensors")
    checks = {c["kind"]: c for c in spec["checks"]}
    encode, decode = checks["first_stage_encode"], checks["first_stage_decode"]
    with torch.no_grad():  # scale_factor 1: the decode input is the first stage's own latent
        for actual, name in ((model.encode(inputs[encode["input"]]), encode["expected"]),
                             (model.decode(inputs[decode["input"]]), decode["expected"])):
            bound = 1e-4 + 1e-4 * float(expected[name].abs().max())
            assert float((actual - expected[name]).abs().max()) <= bound, name


def test_what_does_not_fit_is_named(tmp_path):
    checkpoint, config = first_stage_pair(tmp_path, target="ldm.models.autoencoder.VQModelInterface")
    assert load_compvis_autoencoder(checkpoint, config).config.kind == "vq"
    (tmp_path / "other").mkdir()
    checkpoint, config = first_stage_pair(tmp_path / "other", target="ldm.models.autoencoder.VQSegmentationModel")
    with pytest.raises(CheckpointError, match="VQSegmentationModel"):
        load_compvis_autoencoder(checkpoint, config)
    checkpoint, config = first_stage_pair(tmp_path, extra={"model_ema.decoderconv_inweight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="model_ema"):
        load_compvis_autoencoder(checkpoint, config)
    state = load_file(checkpoint)
    del state["decoder.conv_out.bias"], state["model_ema.decoderconv_inweight"]
    save_file(state, checkpoint)
    with pytest.raises(CheckpointError, match="missing decoder.conv_out.bias"):
        load_compvis_autoencoder(checkpoint, config)


def test_eval_autoencoder_reads_the_original_pair(tmp_path, monkeypatch):
    monkeypatch.setenv("LDMKIT_CACHE", str(tmp_path / "cache"))
    checkpoint, config = first_stage_pair(tmp_path)
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
    code = main(["eval-autoencoder", str(checkpoint), "--config", str(config), "--data", str(tmp_path / "images"),
                 "--resolution", "32", "--split", "all", "--batch-size", "2", "--device", "cpu",
                 "--out", str(tmp_path / "eval")])
    assert code == 0
    metrics = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert metrics["checkpoint"] == str(checkpoint) and metrics["images"] == 2 and np.isfinite(metrics["psnr"])

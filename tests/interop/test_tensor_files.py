"""Foreign checkpoint files are read without running pickled code, at every entry point that reads them."""

import os
import pickle
from pathlib import Path

import pytest
import torch

import ldmkit
from ldmkit.cli import main
from ldmkit.errors import CheckpointError
from ldmkit.interop.diffusers_models import load_unet_folder, save_unet_folder
from ldmkit.interop.tensor_files import read_state_dict
from ldmkit.unet import UNET_PRESETS, UNet

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("LDMKIT_COMPVIS_FIXTURES", REPO / ".." / "shared" / "fixtures" / "compvis"))


class Exploit:
    """Unpickling this would create `marker` (a stand-in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_exploit(path: Path, marker: Path, fmt: str, state: dict | None = None) -> None:
    payload = {"state_dict": state or {"a": torch.zeros(1)}, "callback": Exploit(marker)}
    if fmt == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))


@pytest.mark.parametrize("suffix", [".ckpt", ".bin"])
@pytest.mark.parametrize("fmt", ["torch.save", "pickle"])
def test_a_pickle_that_runs_code_is_refused(tmp_path, fmt, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    write_exploit(path, marker, fmt)
    with pytest.raises(CheckpointError, match=r"pickles Python objects.*arbitrary code.*\.safetensors"):
        read_state_dict(path)
    assert not marker.exists()


def test_ldmkit_load_the_cli_and_diffusers_folders_refuse_it_too(tmp_path, capsys):
    marker = tmp_path / "pwned"
    config = FIXTURES / "vq_uncond_attention" / "config.yaml"
    assert config.is_file(), f"CompVis fixtures missing at {config.parent}"
    write_exploit(tmp_path / "evil.ckpt", marker, "torch.save")
    with pytest.raises(CheckpointError, match="arbitrary code"):
        ldmkit.load(tmp_path / "evil.ckpt", device="cpu", config=config)
    code = main(["sample", str(tmp_path / "evil.ckpt"), "--config", str(config), "--n", "1", "--steps", "1",
                 "--device", "cpu", "--out", str(tmp_path / "out")])
    assert code == 2 and "torch.load(weights_only=True)" in capsys.readouterr().err
    unet = UNet(UNET_PRESETS["tiny"])
    save_unet_folder(unet, tmp_path / "unet")  # then swap its safetensors for a malicious .bin
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    write_exploit(tmp_path / "unet" / "diffusion_pytorch_model.bin", marker, "pickle", unet.state_dict())
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_unet_folder(tmp_path / "unet")
    assert not marker.exists()


def test_plain_and_legacy_pickles_load_and_damaged_files_are_named(tmp_path):
    torch.save({"state_dict": {"a": torch.zeros(1)}, "epoch": 3}, tmp_path / "ok.ckpt")
    assert list(read_state_dict(tmp_path / "ok.ckpt")) == ["a"]
    torch.save({"b": torch.ones(2)}, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    assert torch.equal(read_state_dict(tmp_path / "legacy.bin")["b"], torch.ones(2))
    (tmp_path / "broken.ckpt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.ckpt is not a readable PyTorch checkpoint"):
        read_state_dict(tmp_path / "broken.ckpt")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="broken.safetensors is not a readable safetensors file"):
        read_state_dict(tmp_path / "broken.safetensors")
    torch.save([torch.zeros(1)], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="no state dict"):
        read_state_dict(tmp_path / "list.ckpt")

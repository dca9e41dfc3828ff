import os

import pytest
import torch

from ldmkit import checkpoint
from ldmkit.errors import CheckpointError


def test_model_file_round_trip_keeps_config_and_kind(tmp_path):
    tensors = {"w": torch.randn(3, 4), "b": torch.zeros(2)}
    path = tmp_path / "m.safetensors"
    checkpoint.save_model_file(path, tensors, "autoencoder", {"ch": 32, "mult": [1, 2]})
    loaded, config, meta = checkpoint.load_model_file(path, kind="autoencoder")
    assert torch.equal(loaded["w"], tensors["w"]) and config == {"ch": 32, "mult": [1, 2]}
    with pytest.raises(CheckpointError, match="holds a 'autoencoder' model, but a 'ldm' model"):
        checkpoint.load_model_file(path, kind="ldm")


def test_foreign_and_corrupt_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.ones(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="ldmkit convert"):
        checkpoint.load_model_file(tmp_path / "foreign.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        checkpoint.load_model_file(tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load_model_file(tmp_path / "missing")


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    for step in (10, 20, 30):
        checkpoint.save_checkpoint(tmp_path, step, {"w": torch.full((2,), float(step))}, "autoencoder", {},
                                   {"step": step}, keep_last=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step-00000020", "step-00000030"]
    latest = checkpoint.latest_checkpoint(tmp_path)
    assert latest.name == "step-00000030"
    assert checkpoint.load_state(latest / "state.pt") == {"step": 30}
    assert checkpoint.resolve_model_file(tmp_path) == latest / "model.safetensors"


def test_kept_steps_are_never_pruned(tmp_path):
    for step in (10, 20, 30, 40):
        checkpoint.save_checkpoint(tmp_path, step, {"w": torch.ones(1)}, "autoencoder", {}, {"step": step},
                                   keep_last=1, keep_steps=(20,))
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step-00000020", "step-00000040"]
    (tmp_path / "checkpoints" / "step-00000020.bak").mkdir()  # a user's copy: neither pruned nor a crash
    checkpoint.save_checkpoint(tmp_path, 50, {"w": torch.ones(1)}, "autoencoder", {}, {"step": 50}, keep_last=1)
    assert (tmp_path / "checkpoints" / "step-00000020.bak").is_dir()


def test_a_crash_mid_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    checkpoint.save_checkpoint(tmp_path, 1, {"w": torch.ones(1)}, "autoencoder", {}, {"step": 1})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # killed while writing state.pt

    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(tmp_path, 2, {"w": torch.ones(1)}, "autoencoder", {}, {"step": 2})
    assert checkpoint.latest_checkpoint(tmp_path).name == "step-00000001"
    assert not any(p.name.endswith(".tmp") and p.is_file() for p in (tmp_path / "checkpoints").rglob("*"))


def test_state_files_refuse_arbitrary_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    import pickle

    path = tmp_path / "state.pt"
    path.write_bytes(pickle.dumps({"x": Evil()}, protocol=2))
    with pytest.raises(CheckpointError):
        checkpoint.load_state(path)

import json

import pytest

from ldmkit.autoencoder.checkpoint import load_autoencoder
from ldmkit.config import from_dict
from ldmkit.errors import ConfigError, LdmkitError
from ldmkit.training.autoencoder import AutoencoderRunConfig, train_autoencoder

TINY = {
    "model": {"kind": "vq", "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "n_embed": 16, "embed_dim": 3,
              "z_channels": 3, "vq_restart_every": 2},
    "loss": {"disc_start": 1, "disc_ch": 16, "disc_layers": 2},
    "data": {"resolution": 32, "flip": True},
    "train": {"steps": 4, "batch_size": 4, "log_every": 1, "image_every": 2, "ckpt_every": 2},
    "eval_batches": 1,
}


def losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["loss"], r.get("d_loss")) for r in rows}


def test_resumed_run_reproduces_the_uninterrupted_losses(tmp_path, emoji32):
    cfg = from_dict(AutoencoderRunConfig, TINY)
    train_autoencoder(cfg, tmp_path / "full")
    half = from_dict(AutoencoderRunConfig, {**TINY, "train": {**TINY["train"], "steps": 2}})
    train_autoencoder(half, tmp_path / "split")
    train_autoencoder(cfg, tmp_path / "split", resume=True)
    full, split = losses(tmp_path / "full"), losses(tmp_path / "split")
    assert set(full) == {1, 2, 3, 4} and full == split  # d_loss included: the GAN resumes exactly too
    a, b = load_autoencoder(tmp_path / "full"), load_autoencoder(tmp_path / "split")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert (p == q).all(), name
    assert json.loads((tmp_path / "full" / "eval.json").read_text())["codebook_usage"] > 0


def test_existing_runs_are_never_overwritten_and_resume_checks_the_config(tmp_path, emoji32):
    cfg = from_dict(AutoencoderRunConfig, {**TINY, "train": {**TINY["train"], "steps": 1, "ckpt_every": 1}})
    train_autoencoder(cfg, tmp_path / "run")
    with pytest.raises(LdmkitError, match="already holds a run .* --resume"):
        train_autoencoder(cfg, tmp_path / "run")
    wider = from_dict(AutoencoderRunConfig, {**TINY, "model": {**TINY["model"], "ch": 64}})
    with pytest.raises(ConfigError, match="'model.ch' differs"):
        train_autoencoder(wider, tmp_path / "run", resume=True)
    with pytest.raises(LdmkitError, match="no complete checkpoint"):
        train_autoencoder(cfg, tmp_path / "empty", resume=True)

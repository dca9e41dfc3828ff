import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from ldmkit.checkpoint import latest_checkpoint
from ldmkit.config import dump_yaml, from_dict
from ldmkit.pipeline.model import LatentDiffusion
from ldmkit.training.guard import NonFiniteLossError
from ldmkit.training.ldm import LDMRunConfig, train_ldm

PIXEL = {  # pixel space (identity first stage), tiny UNet, 32 px OpenMoji
    "first_stage": "identity",
    "unet": {"in_channels": 3, "out_channels": 3, "model_channels": 32, "channel_mult": [1, 2],
             "num_res_blocks": 1, "attention_resolutions": [2], "num_heads": 2},
    "data": {"resolution": 32, "flip": True},
    "train": {"steps": 4, "batch_size": 4, "log_every": 1, "image_every": 100, "ckpt_every": 2, "warmup_steps": 2},
    "ema_decay": 0.9,
    "sample_steps": 2,
    "sample_n": 2,
}


def cfg(**train):
    return from_dict(LDMRunConfig, {**PIXEL, "train": {**PIXEL["train"], **train}})


def losses(run_dir):
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def weights(run_dir):
    return load_file(str(latest_checkpoint(run_dir) / "model.safetensors"))


def test_resume_gives_the_losses_of_an_uninterrupted_run(tmp_path, emoji32):
    train_ldm(cfg(), tmp_path / "full")
    train_ldm(cfg(steps=2), tmp_path / "split")
    train_ldm(cfg(), tmp_path / "split", resume=True)
    assert losses(tmp_path / "full") == losses(tmp_path / "split")
    a, b = weights(tmp_path / "full"), weights(tmp_path / "split")
    assert a.keys() == b.keys() and any(k.startswith("ema.unet.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_kept_steps_are_written_off_the_checkpoint_interval_and_outlive_pruning(tmp_path, emoji32):
    train_ldm(cfg(steps=5, ckpt_every=2, keep_last=1, keep_steps=(1,)), tmp_path / "run")
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*"))
    assert names == ["step-00000001", "step-00000005"]


def test_gradient_accumulation_matches_one_big_batch(tmp_path, emoji32):
    train_ldm(cfg(steps=2), tmp_path / "one")
    train_ldm(cfg(steps=2, grad_accum=2), tmp_path / "accum")
    a, b = weights(tmp_path / "one"), weights(tmp_path / "accum")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_non_finite_losses_are_skipped_then_stop_the_run(tmp_path, emoji32, monkeypatch):
    real = LatentDiffusion.loss
    calls = {"n": 0}

    def flaky(self, z0, cond, generators):
        calls["n"] += 1
        loss = real(self, z0, cond, generators)
        return loss * float("nan") if calls["n"] in (2, 5, 6) else loss

    monkeypatch.setattr(LatentDiffusion, "loss", flaky)
    with pytest.raises(NonFiniteLossError, match="2 consecutive non-finite losses up to step 5.*last good checkpoint"):
        train_ldm(cfg(steps=8, max_nonfinite=2), tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["nonfinite_total"] == 1 and rows[2]["nonfinite_total"] == 1  # step 2 skipped, 3 applied
    state = torch.load(latest_checkpoint(tmp_path / "run") / "state.pt", weights_only=True)
    assert state["step"] == 4 and state["nonfinite"] == 1  # the last good checkpoint is intact
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / "run").values() if v.is_floating_point())


def test_two_process_ddp_equals_one_process_with_the_same_global_batch(tmp_path, emoji32):
    config = tmp_path / "pixel.yaml"
    config.write_text(dump_yaml(cfg(steps=3, ckpt_every=3, grad_clip=1.0)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-m", "ldmkit", "train", str(config), "--out", str(tmp_path / "ddp"),
                           "--processes", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    train_ldm(cfg(steps=3, ckpt_every=3, grad_clip=1.0), tmp_path / "single")
    a, b = weights(tmp_path / "ddp"), weights(tmp_path / "single")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "single"), rel=1e-5)

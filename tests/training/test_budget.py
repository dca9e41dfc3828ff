"""train.max_minutes: both trainers stop after the step that crosses the budget, and the clock survives resume.

The clock is faked: every optimiser step (one loss call) advances it by 25 s, so the tests are
deterministic and take no real time into account.
"""

import io
import json

import pytest

from ldmkit.autoencoder.loss import AutoencoderLoss
from ldmkit.checkpoint import latest_checkpoint, load_state
from ldmkit.config import from_dict
from ldmkit.errors import ConfigError
from ldmkit.pipeline.model import LatentDiffusion
from ldmkit.progress import progress
from ldmkit.training import budget
from ldmkit.training.autoencoder import AutoencoderRunConfig, train_autoencoder
from ldmkit.training.config import TrainConfig
from ldmkit.training.ldm import LDMRunConfig, train_ldm

STEP_SECONDS = 25.0
TRAIN = {"steps": 100, "batch_size": 2, "log_every": 1, "image_every": 100, "ckpt_every": 100}
PIXEL_LDM = {
    "first_stage": "identity",
    "unet": {"in_channels": 3, "out_channels": 3, "model_channels": 32, "channel_mult": [1, 2],
             "num_res_blocks": 1, "attention_resolutions": [], "num_heads": 1},
    "data": {"resolution": 32},
    "ema_decay": 0.9,
}
TINY_KL = {
    "model": {"kind": "kl", "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 3, "embed_dim": 3},
    "loss": {"disc_start": 1000, "perceptual_weight": 0.0},
    "data": {"resolution": 32},
    "eval_batches": 1,
}


@pytest.fixture
def fake_clock(monkeypatch):
    """A clock that only moves when `tick()` is called (by a step of training)."""
    now = {"t": 1000.0}
    monkeypatch.setattr(budget, "perf_counter", lambda: now["t"])

    def tick():
        now["t"] += STEP_SECONDS

    return tick


def slowed(monkeypatch, cls, method: str, tick) -> None:
    real = getattr(cls, method)

    def slow(self, *args, **kwargs):
        tick()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, slow)


def logged_seconds(run_dir):
    return [r["train_seconds"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


def state_of(run_dir):
    return load_state(latest_checkpoint(run_dir) / "state.pt")


def test_ldm_training_stops_at_the_budget_and_resume_continues_its_clock(tmp_path, emoji32, monkeypatch, fake_clock):
    slowed(monkeypatch, LatentDiffusion, "loss", fake_clock)
    run = tmp_path / "ldm"

    def cfg(minutes):
        return from_dict(LDMRunConfig, {**PIXEL_LDM, "train": {**TRAIN, "max_minutes": minutes}})

    train_ldm(cfg(1.0), run)  # 25, 50, 75 s: step 3 crosses 60 s
    state = state_of(run)
    assert state["step"] == 3 and state["train_seconds"] == 75.0
    assert logged_seconds(run) == [25.0, 50.0, 75.0]
    train_ldm(cfg(2.0), run, resume=True)  # the clock goes on from 75 s: 100, 125 s
    state = state_of(run)
    assert state["step"] == 5 and state["train_seconds"] == 125.0
    final = train_ldm(cfg(2.0), run, resume=True)  # budget already spent: not one more step
    assert final.name == "step-00000005" and state_of(run)["step"] == 5
    assert logged_seconds(run) == [25.0, 50.0, 75.0, 100.0, 125.0]


def test_autoencoder_training_stops_at_the_budget(tmp_path, emoji32, monkeypatch, fake_clock):
    slowed(monkeypatch, AutoencoderLoss, "generator_loss", fake_clock)
    cfg = from_dict(AutoencoderRunConfig, {**TINY_KL, "train": {**TRAIN, "max_minutes": 0.5}})
    train_autoencoder(cfg, tmp_path / "ae")  # 25, 50 s: step 2 crosses 30 s
    state = state_of(tmp_path / "ae")
    assert state["step"] == 2 and state["train_seconds"] == 50.0
    assert logged_seconds(tmp_path / "ae") == [25.0, 50.0]
    assert (tmp_path / "ae" / "eval.json").is_file()  # a budget-stopped run is evaluated like a finished one


def test_without_a_budget_there_is_no_limit_and_a_bad_one_is_refused():
    assert not budget.TimeBudget(None, spent=1e9).exhausted()
    assert budget.TimeBudget(1.0, spent=60.0).exhausted()
    with pytest.raises(ConfigError, match="max_minutes must be positive"):
        from_dict(TrainConfig, {"max_minutes": 0})


def test_the_progress_bar_counts_steps_without_a_budget_and_minutes_with_one(fake_clock):
    unlimited, limited = budget.TimeBudget(None), budget.TimeBudget(30.0, spent=90.0)
    fake_clock()  # 25 s more: 115 s in all
    assert unlimited.postfix() == {} and limited.postfix() == {"time": "1.9/30 min"}
    for clock, shown in ((unlimited, "100/300"), (limited, "100it")):  # a run resumed at step 100 of 300
        bar = progress(range(100, 300), total=clock.bar_total(300), initial=100, file=io.StringIO())
        assert shown in str(bar)  # with a budget: a count, no total the budget may never reach
        bar.close()

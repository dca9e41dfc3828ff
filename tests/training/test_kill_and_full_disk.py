"""Hard stops of `ldmkit train` on the default path (real first stage, latent cache): kill -9 and a full disk."""

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ldmkit.checkpoint import latest_checkpoint, load_state, save_checkpoint
from ldmkit.cli import main

STEPS = 12  # killed at step 2-4: the child has 8 or more steps left when the signal comes


def visible_checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir() if not p.name.startswith("."))


def logged_steps(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    return metrics.read_text().count("\n") if metrics.is_file() else 0


def assert_complete(run: Path) -> None:
    """Only complete step-* folders and `latest` are visible, and `latest` names one of them."""
    names = visible_checkpoints(run)
    assert "latest" in names and all(n.startswith("step-") for n in names if n != "latest")
    for name in names:
        if name != "latest":
            folder = run / "checkpoints" / name
            assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "state.pt"]
            assert load_state(folder / "state.pt")["step"] == int(name.removeprefix("step-"))
    assert (run / "checkpoints" / "latest").read_text().strip() in names


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_losses(tmp_path, tiny, tiny_autoencoder):
    k = random.Random(20261204).randint(2, 4)  # the step to kill at
    killed, full = tmp_path / "killed", tmp_path / "full"
    argv = tiny.ldm(killed, STEPS, tiny_autoencoder, "train.ckpt_every=1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "ldmkit", *map(str, argv)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while logged_steps(killed) < k:
            assert child.poll() is None, f"the run ended before step {k}: {child.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, f"no step {k} within 120 s"
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert_complete(killed)
    assert k - 1 <= int(latest_checkpoint(killed).name.removeprefix("step-")) < STEPS  # step k ran after k - 1's

    # a checkpoint write the kill cut short leaves a hidden .step-N.PID.tmp folder: the next save removes it
    stale = killed / "checkpoints" / f".step-00000099.{child.pid}.tmp"
    stale.mkdir(exist_ok=True)
    (stale / "model.safetensors").write_bytes(b"partial")
    tiny.cli("train", "--resume", killed)
    assert [p.name for p in (killed / "checkpoints").iterdir() if p.name.startswith(".") and p.is_dir()] == []
    tiny.cli(*tiny.ldm(full, STEPS, tiny_autoencoder))
    uninterrupted = tiny.losses(full)
    assert sorted(uninterrupted) == list(range(1, STEPS + 1))
    rows = tiny.rows(killed)  # steps logged after the last checkpoint are forgotten on resume, then logged again
    assert [(r["step"], r["loss"]) for r in rows] == sorted(uninterrupted.items())
    a, b = tiny.weights(full), tiny.weights(killed)
    assert [n for n in a if not torch.equal(a[n], b[n])] == []
    assert_complete(killed)


def test_full_disk_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, tiny, tiny_autoencoder, capsys,
                                                                     monkeypatch):
    run = tmp_path / "run"
    real_save = torch.save

    def save(obj, f, *args, **kwargs):  # once the 1st checkpoint is in place, the disk is full
        if (run / "checkpoints" / "step-00000001").exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    assert main([str(a) for a in tiny.ldm(run, 3, tiny_autoencoder, "train.ckpt_every=1")]) == 2
    monkeypatch.undo()
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    (line,) = [line for line in stderr.splitlines() if "error" in line]
    assert line.startswith("ldmkit train: error: no space left on device while writing ")
    for names in (run / "checkpoints" / "step-00000002", f"--resume {run}", run / "checkpoints" / "step-00000001"):
        assert str(names) in line  # the checkpoint that failed, how to go on, and the one that is intact
    assert visible_checkpoints(run) == ["latest", "step-00000001"]
    assert_complete(run)
    assert [p for p in run.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")] == []

    samples = tmp_path / "samples"
    assert main(["sample", str(run), "--n", "1", "--steps", "2", "--out", str(samples), "--device", "cpu"]) == 0
    assert (samples / "000000.png").is_file()
    tiny.cli("train", "--resume", run)  # space freed: the run continues from step 1, and trains step 2 again
    assert latest_checkpoint(run).name == "step-00000003"
    steps = [(r["step"], r["loss"]) for r in tiny.rows(run)]
    assert [s for s, _ in steps] == [1, 2, 3]  # step 2, logged before its checkpoint failed, is logged once


def test_a_kill_while_old_checkpoints_are_deleted_shows_no_half_deleted_one(tmp_path, monkeypatch):
    for step in (1, 2):
        save_checkpoint(tmp_path, step, {"w": torch.full((1,), float(step))}, "ldm", {}, {"step": step})
    real_rmtree = shutil.rmtree

    def killed_mid_way(path, *args, **kwargs):  # deletes one file of a checkpoint folder, then the process dies
        files = sorted(Path(path).glob("*")) if Path(path).is_dir() else []
        if files:
            files[0].unlink()
            raise KeyboardInterrupt
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed_mid_way)
    with pytest.raises(KeyboardInterrupt):  # step 3 is written, then step 1 is pruned (keep_last=2)
        save_checkpoint(tmp_path, 3, {"w": torch.full((1,), 3.0)}, "ldm", {}, {"step": 3})
    monkeypatch.undo()
    assert visible_checkpoints(tmp_path) == ["latest", "step-00000002", "step-00000003"]
    assert_complete(tmp_path)

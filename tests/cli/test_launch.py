"""`--processes N`: N processes started by ldmkit itself, whose errors reach the user once, as one line."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ldmkit.cli import launch, main
from ldmkit.cli.launch import _root_cause
from ldmkit.config import dump_yaml, from_dict
from ldmkit.training.ldm import LDMRunConfig

PIXEL = {  # pixel space, a tiny UNet, 32 px OpenMoji, more steps than the test waits for
    "first_stage": "identity",
    "unet": {"in_channels": 3, "out_channels": 3, "model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
             "attention_resolutions": [2], "num_heads": 2},
    "data": {"resolution": 32},
    "train": {"steps": 100000, "batch_size": 4, "ckpt_every": 100000, "image_every": 100000},
}


def _ldmkit(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", "ldmkit", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_an_error_in_every_process_is_printed_once_and_nothing_is_written(tmp_path):
    done = _ldmkit("train", "configs/ldm/emoji64-kl-f4.yaml", "--set", f"first_stage={tmp_path / 'nowhere'}",
                   "--out", str(tmp_path / "run"), "--processes", "2")  # (found by the processes, not the launcher)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr  # one line: no torchrun report
    assert done.stderr.startswith(f"ldmkit train: error: the first stage {tmp_path / 'nowhere'} does not exist")
    assert not (tmp_path / "run").exists()


def test_a_config_typo_is_found_before_any_process_starts(tmp_path):
    done = _ldmkit("train", "configs/ldm/emoji64-kl-f4.yaml", "--set", "train.nosuchkey=1", "--processes", "64")
    assert done.returncode == 2
    assert done.stderr.startswith("ldmkit train: error: unknown config key 'train.nosuchkey'")


def test_a_process_that_fails_without_an_error_line_is_named_with_its_exit_code(tmp_path):
    done = _ldmkit("--debug", "train", "configs/ldm/emoji64-kl-f4.yaml", "--set", f"first_stage={tmp_path / 'x'}",
                   "--processes", "2")  # --debug: the processes show tracebacks instead of error lines
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    last = done.stderr.strip().splitlines()[-1]  # (both processes fail: either may be seen first)
    assert re.fullmatch(r"ldmkit train: error: process [01] of 2 ended with exit code 1; its output is above", last)


def test_the_line_shown_is_the_first_bad_input_then_a_silent_kill_then_the_first_line(tmp_path):
    def write(rank: int, line: str) -> None:
        (tmp_path / f"rank-{rank}").write_text(line)

    relay = "ldmkit eval: error: rank 0 failed: DataError: image folder data/ does not exist"
    cause = "ldmkit eval: error: image folder data/ does not exist"
    bug = "ldmkit eval: error: unexpected RuntimeError: Connection closed by peer; this is a bug in ldmkit"
    write(1, relay), write(0, cause + "\n"), write(2, bug)
    # rank 2 was seen to fail first (its peer's teardown closed the connection), with an exit-1 line
    assert _root_cause(tmp_path, [2, 1, 0], {0: 2, 1: 2, 2: 1}) == (0, cause)  # the relay gives way to rank 0
    (tmp_path / "rank-0").unlink()  # rank 0 was stopped before it could say: the relay is all there is
    assert _root_cause(tmp_path, [2, 1], {0: -15, 1: 2, 2: 1}) == (1, relay)
    # no bad input: a process killed by a signal without a word is the cause, not the others' consequences
    assert _root_cause(tmp_path, [2, 3], {2: 1, 3: -9}) == (3, None)
    assert _root_cause(tmp_path, [3, 2], {2: 1, 3: 1}) == (2, bug)
    assert _root_cause(tmp_path / "none", [1, 0], {0: 1, 1: 1}) == (1, None)


def test_waiting_notices_a_failure_behind_a_running_process_and_stops_the_rest(monkeypatch):
    monkeypatch.setattr(launch, "GRACE_SECONDS", 0.5)
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]),
             subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])]
    started = time.monotonic()
    assert launch._wait(procs) == [1]  # (the process stopped here is not counted as a failure)
    assert time.monotonic() - started < 30 and procs[0].returncode == -signal.SIGTERM


def test_processes_under_torchrun_and_a_bad_count_are_refused_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "configs/ldm/emoji64-kl-f4.yaml", "--processes", "2"]) == 2
    assert capsys.readouterr().err == ("ldmkit train: error: --processes starts its own processes; under torchrun, "
                                       "drop --processes (torchrun's --nproc_per_node sets their number)\n")
    assert main(["eval", "runs/x", "--processes", "0"]) == 2
    assert "argument --processes: must be 1 or more, got 0" in capsys.readouterr().err


def test_more_processes_than_samples_or_gpus_are_refused_before_any_starts(monkeypatch, capsys):
    started = []
    monkeypatch.setattr(launch.subprocess, "Popen", lambda *a, **k: started.append(a))
    assert main(["eval", "runs/x", "--n", "2", "--processes", "3"]) == 2
    assert capsys.readouterr().err == ("ldmkit eval: error: 3 processes would share 2 samples, and some would have "
                                       "none; use at most 2 processes\n")
    monkeypatch.setenv("WORLD_SIZE", "3")  # the same under torchrun, checked by each process
    assert main(["eval", "runs/x", "--n", "2"]) == 2
    assert "3 processes would share 2 samples" in capsys.readouterr().err
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["train", "configs/ldm/emoji64-kl-f4.yaml", "--processes", "2"]) == 2
    assert capsys.readouterr().err == ("ldmkit train: error: --processes 2 needs a GPU for each process, but this "
                                       "machine has 1; use --processes 1 (or the CPU, with gloo: --set "
                                       "train.device=cpu)\n")
    assert main(["eval", "runs/x", "--n", "4", "--processes", "2", "--device", "cuda"]) == 2
    assert "--processes 2 needs a GPU for each process" in capsys.readouterr().err
    assert started == []


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_launcher_takes_its_processes_with_it(tmp_path, emoji32, sig):
    config = tmp_path / "pixel.yaml"
    config.write_text(dump_yaml(from_dict(LDMRunConfig, PIXEL)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    launcher = subprocess.Popen([sys.executable, "-m", "ldmkit", "train", str(config), "--out", str(tmp_path / "run"),
                                 "--processes", "2"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(children := _children(launcher.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(children) == 2
    time.sleep(3)  # (started: past the point where each sets its parent-death signal)
    launcher.send_signal(sig)
    launcher.wait(timeout=60)
    deadline = time.monotonic() + 30
    while any(_alive(child) for child in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(child) for child in children)
    if sig == signal.SIGTERM:
        assert launcher.returncode == 143 and launcher.stderr.read().strip().endswith("ldmkit train: terminated")

"""`--processes N`: N processes started by ldmkit itself, whose errors reach the user once, as one line."""

import os
import subprocess
import sys

from ldmkit.cli import main
from ldmkit.cli.launch import _distinct_errors


def _ldmkit(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", "ldmkit", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_config_error_in_every_process_is_printed_once_and_nothing_is_written(tmp_path):
    done = _ldmkit("train", "configs/ldm/emoji64-kl-f4.yaml", "--set", "train.nosuchkey=1", "--out",
                   str(tmp_path / "run"), "--processes", "2")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr  # one line: no torchrun report
    assert done.stderr.startswith("ldmkit train: error: unknown config key 'train.nosuchkey'")
    assert not (tmp_path / "run").exists()


def test_a_process_that_fails_without_an_error_line_is_named_with_its_exit_code(tmp_path):
    done = _ldmkit("--debug", "train", "configs/ldm/emoji64-kl-f4.yaml", "--set", "train.nosuchkey=1",
                   "--processes", "2")  # --debug: the processes show tracebacks instead of error lines
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == ("ldmkit train: error: process 0 of 2 ended with exit code 1; "
                                                    "its output is above")


def test_the_line_that_relays_rank_0s_error_is_left_out(tmp_path):
    (tmp_path / "rank-0").write_text("ldmkit train: error: image folder data/ does not exist\n")
    (tmp_path / "rank-1").write_text("ldmkit train: error: rank 0 failed: DataError: image folder data/ does not exist")
    (tmp_path / "rank-2").write_text("ldmkit train: error: image folder data/ does not exist")
    assert _distinct_errors(tmp_path, 3) == ["ldmkit train: error: image folder data/ does not exist"]
    (tmp_path / "rank-0").unlink()  # rank 0 was stopped before it could say: the relay is all there is
    assert _distinct_errors(tmp_path, 3) == [
        "ldmkit train: error: rank 0 failed: DataError: image folder data/ does not exist",
        "ldmkit train: error: image folder data/ does not exist"]


def test_processes_under_torchrun_and_a_bad_count_are_refused_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "configs/ldm/emoji64-kl-f4.yaml", "--processes", "2"]) == 2
    assert capsys.readouterr().err == ("ldmkit train: error: --processes starts its own processes; under torchrun, "
                                       "drop --processes (torchrun's --nproc_per_node sets their number)\n")
    assert main(["eval", "runs/x", "--processes", "0"]) == 2
    assert "argument --processes: must be 1 or more, got 0" in capsys.readouterr().err

"""`ldmkit eval` end to end on a tiny untrained pixel-space LDM, in one process, in two under torchrun and in two
started with --processes."""

import json
import os
import socket
import subprocess
import sys

import pytest

from ldmkit.cli import main

ARGS = ["--num-samples", "20", "--steps", "2", "--batch-size", "4", "--ref-split", "all", "--kid-subsets", "5",
        "--device", "cpu"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_eval_writes_labelled_metrics_and_two_processes_agree_with_one(tiny_ldm_file, image_folder, tmp_path,
                                                                      monkeypatch, capsys):
    monkeypatch.setenv("LDMKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "one"
    assert main(["eval", str(tiny_ldm_file), "--ref", str(image_folder), *ARGS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| FD-EffNet |" in printed and "| FID |" not in printed
    one = json.loads((out / "metrics.json").read_text())
    assert one["samples"] == 20 and one["reference_images"] == 12 and one["features"] == "effnet"
    assert one["settings"]["steps"] == 2 and one["settings"]["processes"] == 1
    assert (out / "samples.png").is_file() and "| KID-EffNet |" in (out / "metrics.md").read_text()
    assert len(list((tmp_path / "cache" / "feature-stats").glob("*.npz"))) == 1

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd(), "LDMKIT_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "ldmkit", "eval",
               str(tiny_ldm_file), "--ref", str(image_folder), *ARGS, "--out", str(tmp_path / "two")]
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["settings"]["processes"] == 2
    # IS splits and KID subsets depend on the order of the samples: equal values mean the gathered
    # features are in seed order, whichever rank made them.
    for key in ("FD-EffNet", "KID-EffNet", "IS-EffNet", "IS-EffNet_std", "precision-EffNet", "recall-EffNet"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
    # the same two processes started by ldmkit itself (cli/launch.py), --n spelt short
    command = [sys.executable, "-m", "ldmkit", "eval", str(tiny_ldm_file), "--ref", str(image_folder), *ARGS,
               "--n", "20", "--out", str(tmp_path / "launched"), "--processes", "2"]
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
    launched = json.loads((tmp_path / "launched" / "metrics.json").read_text())
    assert launched["settings"]["processes"] == 2 and launched["FD-EffNet"] == pytest.approx(two["FD-EffNet"])


def test_eval_refuses_a_statistics_file_as_the_source_of_conditions(tiny_ldm_file, tmp_path, capsys):
    code = main(["eval", str(tiny_ldm_file), "--ref", str(tmp_path / "stats.npz"), "--condition-from-data",
                 "--device", "cpu"])
    assert code == 2 and "--condition-from-data needs images" in capsys.readouterr().err

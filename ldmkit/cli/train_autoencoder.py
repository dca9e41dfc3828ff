"""`ldmkit train-autoencoder CONFIG [--set key=value ...] [--out RUN_DIR] [--resume RUN_DIR]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ldmkit.cli.common import add_config_arguments, resolve_run_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, example="configs/autoencoder/kl-f4-emoji64.yaml")


def run(args: argparse.Namespace) -> int:
    from ldmkit.training.autoencoder import AutoencoderRunConfig, train_autoencoder

    cfg, run_dir = resolve_run_config(AutoencoderRunConfig, args)
    final = train_autoencoder(cfg, run_dir, resume=args.resume is not None)
    print(f"checkpoint: {final}")
    eval_file = Path(run_dir) / "eval.json"
    if eval_file.is_file():
        print(f"validation metrics: {eval_file.read_text().strip()}")
    return 0

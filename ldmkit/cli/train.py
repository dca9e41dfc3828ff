"""`ldmkit train CONFIG [--set key=value ...] [--out RUN_DIR] [--resume RUN_DIR]`: train an LDM.

Several processes: `torchrun --nproc_per_node N -m ldmkit train CONFIG ...` (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import argparse

from ldmkit.cli.common import add_config_arguments, resolve_run_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, example="configs/ldm/emoji64-kl-f4.yaml")


def run(args: argparse.Namespace) -> int:
    from ldmkit.training.ldm import LDMRunConfig, train_ldm

    cfg, run_dir = resolve_run_config(LDMRunConfig, args)
    final = train_ldm(cfg, run_dir, resume=args.resume is not None)
    if final is not None:
        print(f"checkpoint: {final}")
    return 0

"""`ldmkit train CONFIG [--set key=value ...] [--out RUN_DIR] [--resume RUN_DIR]`: train an LDM.

Fine-tuning: `ldmkit train [CONFIG] --init-from MODEL [--init-config YAML] --out RUN_DIR` starts from a
trained model (an ldmkit run or model file, a CompVis / SD checkpoint + YAML, a diffusers folder) and
takes its architecture from it; `--set lora.rank=4` trains low-rank adapters only
(ldmkit/training/init_from.py, ldmkit/lora/).
Several processes: `ldmkit train CONFIG --processes N` on one machine, `torchrun ... -m ldmkit train CONFIG`
across machines (gloo on CPU, NCCL on GPU; ldmkit/training/distributed.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ldmkit.cli.common import add_config_arguments, resolve_run_config
from ldmkit.cli.launch import add_processes_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, example="configs/ldm/emoji64-kl-f4.yaml")
    p.add_argument("--init-from", metavar="MODEL", help="fine-tune: start from this trained model (ldmkit run or "
                                                        "model file, CompVis .ckpt/.safetensors, diffusers folder)")
    p.add_argument("--init-config", metavar="YAML", help="with --init-from a CompVis checkpoint: its original YAML")
    add_processes_argument(p, "train")


def check_before_launch(args: argparse.Namespace) -> str | None:
    """With --processes: the config file and overrides, read once before the processes start (the rest of the
    checks need the model to start from, the data and the run folder: each process makes them). The device
    the processes will train on, where known before the model to start from is read."""
    from ldmkit.training.ldm import LDMRunConfig

    if args.init_from:
        return None
    cfg, _ = resolve_run_config(LDMRunConfig, args)
    return cfg.train.device


def run(args: argparse.Namespace) -> int:
    from ldmkit.config import apply_overrides, parse_override, read_yaml
    from ldmkit.errors import ConfigError
    from ldmkit.training.init_from import InitConfig, given_keys, load_init_model, starting_config
    from ldmkit.training.ldm import LDMRunConfig, train_ldm

    if args.init_config and not args.init_from:
        raise ConfigError("--init-config is the YAML of the model given with --init-from; add --init-from MODEL")
    if args.init_from:
        if args.resume:
            raise ConfigError("--init-from starts a new run; --resume continues one, whose config records where it "
                              "started: drop --init-from")
        if args.config is None and args.out is None:
            raise ConfigError("with --init-from and no CONFIG, name the run folder with --out")
        paths = [f"init.model={json.dumps(args.init_from)}"]  # (JSON strings are YAML strings: any path)
        paths += [f"init.config={json.dumps(args.init_config)}"] if args.init_config else []
        args.overrides = [*paths, *args.overrides]
    source = None
    if args.config is None and args.init_from:  # MODEL's architecture, the defaults elsewhere, the overrides
        init = [text.partition("init.")[2] for text in args.overrides if text.startswith("init.")]
        source_init = apply_overrides(InitConfig(), init)
        source = load_init_model(source_init)
        cfg = apply_overrides(starting_config(LDMRunConfig, source.config, source_init), args.overrides)
        run_dir = Path(args.out)
    else:
        cfg, run_dir = resolve_run_config(LDMRunConfig, args)
    given = None  # the keys the user set: with --init-from they must agree with MODEL
    if not args.resume:
        given = given_keys(read_yaml(Path(args.config).read_text()) if args.config else {})
        for text in args.overrides:
            path, value = parse_override(text)
            key = ".".join(path)
            given |= {f"{key}.{k}" for k in given_keys(value)} if isinstance(value, dict) else {key}
    final = train_ldm(cfg, run_dir, resume=args.resume is not None, given=given, source=source)
    if final is not None:
        print(f"checkpoint: {final}")
    return 0

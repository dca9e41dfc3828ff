"""Argument handling shared by the training commands: CONFIG, --set, --out, --resume."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ldmkit.config import load_config
from ldmkit.errors import ConfigError


def add_config_arguments(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument("config", nargs="?", help=f"YAML config, e.g. {example} (default with --resume: the run's own)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=2000 (repeatable)")
    p.add_argument("--out", help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")


def resolve_run_config(cls: type, args: argparse.Namespace) -> tuple[Any, Path]:
    """The config (file + overrides) and the run folder the command should use."""
    if args.resume and args.out and Path(args.out) != Path(args.resume):
        raise ConfigError("--out and --resume name different folders; --resume alone picks the run folder")
    config = args.config or (Path(args.resume) / "config.yaml" if args.resume else None)
    if config is None:
        raise ConfigError("give a CONFIG file (see configs/) or --resume RUN_DIR")
    cfg = load_config(cls, config, args.overrides)
    run_dir = Path(args.resume or args.out or Path("runs") / Path(config).stem)
    return cfg, run_dir

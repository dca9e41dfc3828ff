"""`ldmkit merge-lora BASE LORA[:WEIGHT] [LORA[:WEIGHT] ...] --out DIR`: adapters merged into a standalone model.

Writes DIR/model.safetensors (kind "ldm"), which every command reads like any ldmkit model; BASE is
anything `ldmkit.load` reads (with --config / --text-encoder for CompVis checkpoints), each LORA an
ldmkit LoRA run or file or a kohya / diffusers LoRA .safetensors. The merged file keeps the run
config of the first ldmkit adapter (its data), so `ldmkit eval DIR` finds the data it was trained on.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", help="the model the adapters were made for (ldmkit run or file, CompVis "
                                ".ckpt/.safetensors with --config, diffusers folder)")
    p.add_argument("lora", nargs="+", metavar="LORA[:WEIGHT]", help="adapters to merge, each with its weight "
                                                                    "(default 1), in order")
    p.add_argument("--out", required=True, help="output folder (gets model.safetensors)")
    p.add_argument("--config", help="the original YAML when BASE is a CompVis .ckpt/.safetensors")
    p.add_argument("--text-encoder", metavar="CLIP_DIR", help="Stable Diffusion checkpoints: a local CLIP folder")
    p.add_argument("--no-ema", action="store_true", help="merge into BASE's raw weights instead of its EMA ones")


def load_base(args: argparse.Namespace):
    """BASE as a LatentDiffusion (not a Pipeline: its weights stay as stored) and the file or folder it came from."""
    from ldmkit.interop.foreign_models import load_any_ldm

    return load_any_ldm(args.base, args.config, not args.no_ema, args.text_encoder)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ldmkit.checkpoint import MODEL_FILE, save_model_file
    from ldmkit.errors import ConfigError
    from ldmkit.lora.files import apply_adapters, parse_spec, read_lora_file
    from ldmkit.pipeline.checkpoint import KIND, ldm_config_dict, ldm_tensors

    target = Path(args.out) / MODEL_FILE
    if target.exists():
        raise ConfigError(f"{target} exists already; choose another --out (merge-lora never overwrites a model)")
    specs = [parse_spec(text) for text in args.lora]
    model, source = load_base(args)
    apply_adapters(model, specs)  # every adapter checked against BASE before anything is written
    extra = {"ldmkit.merged_from": json.dumps({"base": str(source), "use_ema": not args.no_ema,
                                               "lora": [{"path": p, "weight": w} for p, w in specs]})}
    for path, _ in specs:
        run_config = read_lora_file(path)[1].get("ldmkit.run_config")
        if run_config:
            extra["ldmkit.run_config"] = run_config
            break
    save_model_file(target, ldm_tensors(model), KIND, ldm_config_dict(model), extra=extra)
    print(f"wrote {target}")
    return 0

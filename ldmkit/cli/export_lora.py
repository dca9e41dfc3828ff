"""`ldmkit export-lora BASE LORA --format kohya|diffusers|ldmkit --out FILE`: an adapter in another tool's format.

kohya: the kohya-ss / A1111 layout (`lora_unet_..._lora_down.weight`, `lora_up.weight`, `.alpha`);
diffusers: what `pipe.load_lora_weights(FILE)` reads (`unet.<module>.lora_A.weight`, `lora_B.weight`).
Both name diffusers' modules, so they cover SD-v1-layout UNets (cross-attention blocks) and CLIP text
encoders; BASE (the model the adapter was made for) supplies the names. LORA may be in any format
`--lora` reads, so this also converts kohya <-> diffusers.
"""

from __future__ import annotations

import argparse

FORMATS = ("kohya", "diffusers", "ldmkit")  # (ldmkit/interop/lora_formats.py)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", help="the model the adapter was made for (ldmkit run or file, CompVis "
                                ".ckpt/.safetensors with --config, diffusers folder)")
    p.add_argument("lora", help="the adapter: an ldmkit LoRA run or file, a kohya or diffusers .safetensors")
    p.add_argument("--format", required=True, choices=FORMATS, help="the format to write")
    p.add_argument("--out", required=True, help="the .safetensors file to write")
    p.add_argument("--config", help="the original YAML when BASE is a CompVis .ckpt/.safetensors")
    p.add_argument("--text-encoder", metavar="CLIP_DIR", help="Stable Diffusion checkpoints: a local CLIP folder")
    p.add_argument("--no-ema", action="store_true", default=False, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ldmkit.cli.merge_lora import load_base
    from ldmkit.errors import ConfigError
    from ldmkit.lora.adapter import apply_adapter
    from ldmkit.lora.files import adapter_info, read_adapter, write_adapter

    out = Path(args.out)
    if out.suffix != ".safetensors" or out.is_dir():
        raise ConfigError(f"--out {out}: give a .safetensors file to write")
    model, _ = load_base(args)
    adapter = read_adapter(args.lora, model)
    apply_adapter(model, adapter, 0.0, source=f"LoRA {args.lora}")  # shapes checked against BASE
    write_adapter(out, adapter, model, args.format, config=adapter_info(args.lora))
    print(f"wrote {out} ({args.format} format, {len(adapter)} layers)")
    return 0

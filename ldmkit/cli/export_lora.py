"""`ldmkit export-lora BASE LORA --format kohya|diffusers|ldmkit --out FILE`: an adapter in another tool's format.

kohya: the kohya-ss / A1111 layout (`lora_unet_..._lora_down.weight`, `lora_up.weight`, `.alpha`);
diffusers: what `pipe.load_lora_weights(FILE)` reads (`unet.<module>.lora_A.weight`, `lora_B.weight`).
Both name diffusers' modules, so they cover SD-v1-layout UNets (cross-attention blocks) and CLIP text
encoders; BASE (the model the adapter was made for) supplies the names. LORA may be in any format
`--lora` reads, so this also converts kohya <-> diffusers.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", help="the model the adapter was made for (ldmkit run or file, CompVis "
                                ".ckpt/.safetensors with --config, diffusers folder)")
    p.add_argument("lora", help="the adapter: an ldmkit LoRA run or file, a kohya or diffusers .safetensors")
    p.add_argument("--format", required=True, help="the format to write: kohya, diffusers or ldmkit")
    p.add_argument("--out", required=True, help="the .safetensors file to write")
    p.add_argument("--config", help="the original YAML when BASE is a CompVis .ckpt/.safetensors")
    p.add_argument("--text-encoder", metavar="CLIP_DIR", help="Stable Diffusion checkpoints: a local CLIP folder")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ldmkit.errors import ConfigError
    from ldmkit.interop.foreign_models import load_any_ldm
    from ldmkit.interop.lora_formats import FORMATS
    from ldmkit.lora.adapter import apply_adapter
    from ldmkit.lora.files import adapter_info, read_adapter, write_adapter

    if args.format not in FORMATS:
        raise ConfigError(f"--format {args.format!r} is unknown; choose one of {', '.join(FORMATS)}")
    out = Path(args.out)
    if out.suffix != ".safetensors" or out.is_dir():
        raise ConfigError(f"--out {out}: give a .safetensors file to write")
    model, _ = load_any_ldm(args.base, args.config, text_encoder=args.text_encoder)  # (its layer names and shapes)
    adapter = read_adapter(args.lora, model)
    apply_adapter(model, adapter, 0.0, source=f"LoRA {args.lora}")  # shapes checked against BASE
    write_adapter(out, adapter, model, args.format, config=adapter_info(args.lora))
    print(f"wrote {out} ({args.format} format, {len(adapter)} layers)")
    return 0

"""`ldmkit convert ORIGINAL.ckpt|.safetensors --config ORIGINAL.yaml --out DIR`: a CompVis model as an ldmkit folder.

Writes DIR/model.safetensors (kind "ldm", raw and EMA weights), which `ldmkit.load(DIR)` and
`ldmkit sample DIR` read. The original pair can also be used directly, without converting:
`ldmkit sample ORIGINAL.ckpt --config ORIGINAL.yaml`.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="original CompVis checkpoint (.ckpt or .safetensors)")
    p.add_argument("--config", required=True, help="its original YAML config")
    p.add_argument("--out", required=True, help="output folder (gets model.safetensors)")
    p.add_argument("--text-encoder", metavar="CLIP_DIR",
                   help="Stable Diffusion only: a local CLIP folder (config.json + tokenizer files)")


def run(args: argparse.Namespace) -> int:
    from ldmkit.interop.compvis import convert_compvis

    target = convert_compvis(args.checkpoint, args.config, args.out, text_encoder=args.text_encoder)
    print(f"wrote {target}")
    return 0

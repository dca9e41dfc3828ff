"""`ldmkit convert ORIGINAL.ckpt|.safetensors --config ORIGINAL.yaml --out DIR`: a foreign model as an ldmkit folder.

Writes DIR/model.safetensors (kind "ldm"; a CompVis checkpoint keeps its raw and EMA weights),
which `ldmkit.load(DIR)` and `ldmkit sample DIR` read. Also converts a diffusers pipeline folder
(`ldmkit convert DIFFUSERS_DIR --out DIR`, no --config), Stable Diffusion folders included: the CLIP
text encoder's weights go into the model file, its config.json and the tokenizer files are copied
to DIR/text_encoder/ and DIR/tokenizer/, named relative to DIR (so DIR may be moved whole).
Either can also be used directly, without converting: `ldmkit sample ORIGINAL.ckpt --config
ORIGINAL.yaml`, `ldmkit sample DIFFUSERS_DIR`.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="original CompVis checkpoint (.ckpt or .safetensors), or a diffusers "
                                      "pipeline folder (with model_index.json)")
    p.add_argument("--config", help="the checkpoint's original YAML config (default: the one YAML beside it)")
    p.add_argument("--out", required=True, help="output folder (gets model.safetensors)")
    p.add_argument("--text-encoder", metavar="CLIP_DIR",
                   help="Stable Diffusion checkpoints in the CompVis format only: a local CLIP folder (config.json "
                        "+ tokenizer files); a diffusers folder carries its own text_encoder/ and tokenizer/")


def run(args: argparse.Namespace) -> int:
    from ldmkit.interop.foreign_models import convert_foreign

    target = convert_foreign(args.checkpoint, args.out, config=args.config, text_encoder=args.text_encoder)
    print(f"wrote {target}")
    return 0

"""`ldmkit export-diffusers CHECKPOINT --out DIR`: write an LDM as a diffusers pipeline folder.

An unconditional model's folder (model_index.json, unet/, vqvae/, scheduler/, ldmkit.json) loads
with diffusers' `LDMPipeline.from_pretrained(DIR)` (`DDIMPipeline` for pixel-space models); a CLIP
text-to-image model's (vae/, text_encoder/, tokenizer/, no safety checker) with
`StableDiffusionPipeline.from_pretrained(DIR)`. Conditional models no diffusers pipeline runs (class,
BERT/MiniLM text, layout, semantic, inpainting) are refused with the reason. Every folder reads back
into ldmkit (`ldmkit sample DIR`). EMA weights by default.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="ldmkit run folder, checkpoint folder or model file")
    p.add_argument("--out", required=True, help="the diffusers folder to write")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights instead of the EMA ones")
    p.add_argument("--config", help="the original YAML when CHECKPOINT is a CompVis .ckpt/.safetensors")
    p.add_argument("--text-encoder", metavar="CLIP_DIR", help="Stable Diffusion checkpoints: a local CLIP folder")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it already holds files")


def run(args: argparse.Namespace) -> int:
    import ldmkit
    from ldmkit.interop.diffusers_folders import save_diffusers_folder

    model = ldmkit.load(args.checkpoint, device="cpu", use_ema=not args.no_ema, config=args.config,
                        text_encoder=args.text_encoder).model
    out = save_diffusers_folder(model, args.out, overwrite=args.overwrite)
    print(f"wrote diffusers folder {out}")
    return 0

"""The `ldmkit` command line: one small module per subcommand, each with `add_arguments` and `run`."""

from __future__ import annotations

import argparse
import importlib
import sys

from ldmkit.errors import LdmkitError

# subcommand -> (module under ldmkit.cli, one-line help)
COMMANDS = {
    "train-autoencoder": ("train_autoencoder", "train a stage-1 autoencoder (KL or VQ)"),
    "eval-autoencoder": ("eval_autoencoder", "PSNR / SSIM / perceptual distance of an autoencoder"),
    "make-shards": ("make_shards", "pack an image folder into WebDataset tar shards"),
    "cache-latents": ("cache_latents", "encode a dataset once with a frozen first stage"),
    "train": ("train", "train a latent diffusion model (stage 2)"),
    "sample": ("sample", "generate images with a trained latent diffusion model"),
    "convert": ("convert", "convert a CompVis checkpoint + YAML or a diffusers folder into an ldmkit model folder"),
    "upscale": ("upscale", "4x super-resolution of an image of any size with a super-resolution LDM"),
    "inpaint": ("inpaint", "fill the masked part of an image with an inpainting LDM"),
    "eval": ("eval", "sample-quality metrics of an LDM: FD-EffNet/FID, KID, IS, precision/recall"),
    "export-diffusers": ("export_diffusers", "write an LDM as a diffusers pipeline folder"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ldmkit", description="Latent Diffusion Models, offline-first.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(f"ldmkit.cli.{module_name}")
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args._module.run(args) or 0
    except LdmkitError as err:
        print(f"ldmkit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ldmkit {args.command}: interrupted", file=sys.stderr)
        return 130

"""The `ldmkit` command line: one small module per subcommand, each with `add_arguments` and `run`.

Any bad input ends with one line `ldmkit CMD: error: <what>; <how to fix>` and exit code 2; a
traceback is shown only with --debug (or LDMKIT_DEBUG=1), for developers.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys

from ldmkit.cli.launch import launch_processes, report, wants_launch
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
    "serve": ("serve", "an HTTP server: A1111-compatible API, native endpoints and a web page"),
    "merge-lora": ("merge_lora", "merge LoRA adapters into a standalone model"),
    "export-lora": ("export_lora", "write a LoRA adapter in the kohya / A1111 or diffusers format"),
}
EXIT_BAD_INPUT = 2  # a problem with the input or the environment, explained in one line
EXIT_BUG = 1  # an error ldmkit did not foresee: also one line, with --debug for the traceback


class Parser(argparse.ArgumentParser):
    """argparse's usage errors in the same one-line form as every other error."""

    def error(self, message: str) -> None:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ldmkit", description="Latent Diffusion Models, offline-first.")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks (also: LDMKIT_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show Python tracebacks")
        module = importlib.import_module(f"ldmkit.cli.{module_name}")
        module.add_arguments(p)
        p.set_defaults(_module=module)
    parser.commands = sub.choices  # name -> its parser
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the command's own parser, which knows its options
            parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as done:  # --help (0), or a usage error already printed as one line (2)
        return done.code if isinstance(done.code, int) else EXIT_BAD_INPUT
    debug = args.debug or os.environ.get("LDMKIT_DEBUG", "") not in ("", "0")
    quiet = os.environ.get("RANK", "0") != "0"  # the other processes of a distributed run: rank 0 warns for them
    logging.basicConfig(format=f"ldmkit {args.command}: warning: %(message)s",
                        level=logging.ERROR if quiet else logging.WARNING)
    try:
        if wants_launch(args):  # --processes N: this process starts N that run the command (cli/launch.py)
            check = getattr(args._module, "check_before_launch", lambda _: None)  # a typo: one line, no processes
            device = check(args)
            return launch_processes(args.command, sys.argv[1:] if argv is None else argv, args.processes, device)
        return args._module.run(args) or 0
    except KeyboardInterrupt:
        report(f"ldmkit {args.command}: interrupted")
        return 130
    except Exception as err:  # every failure reaches the user as one line; --debug shows the traceback
        if debug:
            raise
        report(f"ldmkit {args.command}: error: {describe(err)}")
        return EXIT_BAD_INPUT if isinstance(err, (LdmkitError, OSError, *OUT_OF_MEMORY)) else EXIT_BUG


def _out_of_memory() -> tuple[type, ...]:
    import torch  # (imported by every command that can run out of memory anyway)

    return (MemoryError, torch.OutOfMemoryError)


OUT_OF_MEMORY = _out_of_memory()


def describe(err: Exception) -> str:
    """One line naming the problem and the fix, for any exception."""
    if isinstance(err, LdmkitError):
        return str(err)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return (f"no space left on device{' writing ' + str(err.filename) if err.filename else ''}; free some space "
                "or write elsewhere (--out)")
    if isinstance(err, PermissionError):
        return f"permission denied: {err.filename or err}; choose a location you can write to (or read)"
    if isinstance(err, FileNotFoundError):
        return f"no such file or folder: {err.filename or err}; check the path"
    if isinstance(err, OSError):
        return f"{err.strerror or err}{': ' + str(err.filename) if err.filename else ''}; check the path and the disk"
    if isinstance(err, OUT_OF_MEMORY):
        return "out of memory; use a smaller --batch-size or image size"
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (f"unexpected {type(err).__name__}: {text}; this is a bug in ldmkit: rerun with --debug for the "
            "traceback and report it")

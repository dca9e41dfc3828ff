"""Arguments shared by several commands: training (CONFIG, --set, --out, --resume), loading a model,
and sampling with it (--steps, --sampler, --eta, --guidance, --seed). One home for their help texts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ldmkit.config import load_config
from ldmkit.errors import ConfigError


def add_config_arguments(p: argparse.ArgumentParser, example: str, run_folder: bool = True) -> None:
    """CONFIG, --set, --resume, and --out unless the command writes no run folder (run_folder=False)."""
    p.add_argument("config", nargs="?", help=f"YAML config, e.g. {example} (default with --resume: the run's own)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=2000 (repeatable)")
    if run_folder:
        p.add_argument("--out", help="run folder (default: runs/<config name>)")
    else:
        p.set_defaults(out=None)
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


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """How to load the model: --config / --text-encoder for foreign checkpoints, --no-ema, --device."""
    p.add_argument("--config", help="the original YAML when the model is a CompVis .ckpt/.safetensors")
    p.add_argument("--text-encoder", metavar="CLIP_DIR", help="a Stable Diffusion .ckpt/.safetensors with --config: a "
                   "local CLIP folder (diffusers folders carry their own text_encoder/ and tokenizer/)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA ones")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    add_fast_path_arguments(p)


def add_fast_path_arguments(p: argparse.ArgumentParser) -> None:
    """--dtype and --compile: how the loaded model runs (ldmkit/fast/inference.py)."""
    from ldmkit.device import DTYPE_CHOICES

    p.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES,
                   help="inference precision; auto (default): bfloat16 where the CPU (AMX, AVX512-BF16) or GPU "
                        "multiplies it natively, else float32 (the reference; docs/benchmarks.md shows the difference)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the UNet and decoder: the first run of each batch and image size compiles "
                        "(a minute at SD size), later processes reuse the compiled code cached on disk "
                        "(LDMKIT_COMPILE_CACHE, default ~/.cache/ldmkit/torch-compile)")


def add_lora_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lora", action="append", metavar="LORA[:WEIGHT]",
                   help="apply a LoRA adapter (an ldmkit LoRA run or file, a kohya or diffusers .safetensors) with "
                        "this weight (default 1; 0 leaves the model as it is); repeatable")


def add_guide_and_decoder_arguments(p: argparse.ArgumentParser) -> None:
    """--guide and --tiny-decoder: the two other models a generating command can load beside its own."""
    p.add_argument("--guide", metavar="MODEL",
                   help="autoguidance: guide with this weaker model of the same latent space (an early checkpoint of "
                        "the run, e.g. RUN/checkpoints/step-00000200) in place of the unconditional branch; --guidance "
                        "sets the strength (2 on the main job's model: docs/results/RECIPE.md), unconditional models "
                        "included")
    p.add_argument("--tiny-decoder", metavar="PATH",
                   help="decode with this TAESD-style tiny decoder instead of the model's own (a diffusers "
                        "AutoencoderTiny folder such as madebyollin/taesd for SD v1, TAESD's "
                        "taesd_decoder.safetensors, or an ldmkit file from experiments/tiny_decoder.py): much faster "
                        "at 512 px, approximate images (docs/sampling.md)")


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    from ldmkit.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS

    steps, sampler = DEFAULT_STEPS, DEFAULT_SAMPLER
    p.add_argument("--steps", type=int, default=steps, help="sampling steps (default: %(default)s)")

    p.add_argument("--sampler", default=sampler, help=f"{', '.join(SAMPLERS)} (default: %(default)s)")
    p.add_argument("--eta", type=float, help="DDIM / Euler-ancestral noise (DDIM default 0)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1: off)")
    p.add_argument("--seed", type=int, default=0, help="image i gets seed + i")


def add_shortcut_arguments(p: argparse.ArgumentParser) -> None:
    """Sampling shortcuts whose cost in quality docs/results/RECIPE.md measures."""
    p.add_argument("--karras", action="store_true", help="Karras et al.'s noise levels (euler, euler_a, heun, "
                                                         "dpmpp_2m)")
    p.add_argument("--guidance-interval", nargs=2, type=float, metavar=("LOW", "HIGH"),
                   help="guide only at noise levels sigma in (LOW, HIGH]; elsewhere one conditional UNet call")
    p.add_argument("--cache-interval", type=int, metavar="K",
                   help="reuse the UNet's deep features between steps (DeepCache): the whole UNet every K-th call")


def shortcut_options(args: argparse.Namespace) -> dict[str, Any]:
    interval = tuple(args.guidance_interval) if args.guidance_interval else None
    return {"karras": args.karras, "guidance_interval": interval, "cache_interval": args.cache_interval}


def load_model(args: argparse.Namespace, path: str, device: str | None = None, dtype=None):
    """The Pipeline of the model at `path` with the command's loading options (and --lora adapters)."""
    import ldmkit
    from ldmkit.lora import parse_spec

    lora = [parse_spec(text) for text in getattr(args, "lora", None) or []]
    if getattr(args, "guide", None) and getattr(args, "guidance", 1.0) == 1.0:
        from ldmkit.errors import ConfigError

        raise ConfigError("--guide acts through --guidance, which is 1 (off); set it above 1 (2 suits the main "
                          "job's model) or drop --guide")
    if args.compile:
        from ldmkit.fast.inference import compile_cache_dir

        print(f"--compile: the first batch of each size compiles (minutes at SD size) unless an earlier process "
              f"cached it in {compile_cache_dir()}", flush=True)
    return ldmkit.load(path, device=device or args.device, use_ema=not args.no_ema, config=args.config,
                       text_encoder=args.text_encoder, lora=lora, dtype=dtype or args.dtype, compile=args.compile,
                       guide=getattr(args, "guide", None), tiny_decoder=getattr(args, "tiny_decoder", None))


def precision_note(args: argparse.Namespace, pipe) -> str:
    """What --dtype auto chose, when it chose bfloat16 (said once, with the command's result)."""
    from ldmkit.device import native_bf16

    if getattr(args, "dtype", None) != "auto" or str(pipe.dtype) == "torch.float32":
        return ""
    return (f" (in bfloat16: --dtype auto, as this {pipe.device.type} has {native_bf16(pipe.device)}; "
            "--dtype float32 for the reference precision)")


def sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling arguments as keyword arguments of Pipeline calls."""
    return {"steps": args.steps, "sampler": args.sampler, "eta": args.eta, "guidance": args.guidance,
            "seed": args.seed}


# suffixes of image files: an --out that ends so names a file, never a folder to create
IMAGE_FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def output_folder(path: str | Path) -> Path:
    """`path`, checked to be a folder that exists or can be created, with a clear error where not. Nothing
    is created here: the command's first write creates it (`make_folder`), after every input is checked."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file, not a folder; give a folder")
    if path.suffix.lower() in IMAGE_FILE_SUFFIXES and not path.exists():
        raise ConfigError(f"--out {path} names an image file, but this command writes a folder (of PNGs and what "
                          f"describes them); give a folder, e.g. {path.with_suffix('')}")
    existing = next(p for p in (path, *path.parents) if p.exists())  # ("/" or "." at the latest)
    if not existing.is_dir():
        raise ConfigError(f"cannot create the output folder {path}: {existing} is a file; give another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create the output folder {path}: {existing} is not writable; give another --out")
    return path


def make_folder(path: Path) -> Path:
    """`path` created (with its parents) as a folder; a clear error where that is impossible."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the output folder {path}: {err.strerror}; give another --out") from err
    return path

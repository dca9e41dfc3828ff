"""`ldmkit eval CHECKPOINT --ref DATASET --n N`: sample-quality metrics of a latent diffusion model.

Generates N samples (seeds seed .. seed + N - 1, in batches), computes FD/FID, KID, IS and
precision/recall against the reference set, prints them and writes `metrics.json`, `metrics.md`
and a preview grid `samples.png`. Features: `--features effnet` (default, offline: FD-EffNet, ...)
or `--features inception` (FID, ...: needs pt_inception-2015-12-05-6726825d.pth, see
`ldmkit.evaluation.inception`). Several processes or GPUs share the sampling:
`ldmkit eval CHECKPOINT --n N --processes 4 ...` (each process generates every 4th seed), or
`torchrun --nproc_per_node 4 -m ldmkit eval CHECKPOINT --num-samples N ...` across machines
(torchrun's parser rejects `--n` as an ambiguous abbreviation of its own options).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

from ldmkit.cli.common import (
    add_guide_and_decoder_arguments,
    add_lora_argument,
    add_model_arguments,
    add_sampling_arguments,
    add_shortcut_arguments,
    load_model,
    make_folder,
    output_folder,
    precision_note,
    shortcut_options,
)
from ldmkit.cli.launch import add_processes_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="ldmkit run folder, checkpoint folder or model file of an LDM, an original "
                                      "CompVis .ckpt/.safetensors (with --config) or a diffusers folder")
    p.add_argument("--ref", help="reference: 'openmoji', an image folder, or a .npz of statistics "
                                 "(default: the dataset the run trained on)")
    p.add_argument("--ref-split", default="train", choices=["train", "val", "all"],
                   help="which images of a reference dataset (default: train, what the model learned)")
    p.add_argument("--ref-n", type=int, help="use a fixed random subset of this many reference images")
    p.add_argument("--n", "--num-samples", dest="n", type=int, default=1000,
                   help="number of samples to generate (spell it --num-samples under torchrun, whose own "
                        "option parser takes --n for an abbreviation of its --nnodes / --nproc-per-node)")
    add_sampling_arguments(p)
    add_shortcut_arguments(p)
    p.add_argument("--batch-size", type=int, default=16, help="samples generated at once per process")
    add_processes_argument(p, "share the sampling out")
    p.add_argument("--features", default="effnet", choices=["effnet", "inception"],
                   help="feature network: effnet (offline; FD-EffNet, KID-EffNet, ...) or inception (FID, ...)")
    p.add_argument("--inception-weights", metavar="PATH", help="pt_inception-2015-12-05-6726825d.pth "
                   "(default: looked up in $LDMKIT_CACHE or ~/.cache/ldmkit/)")
    p.add_argument("--condition-from-data", nargs="?", const=True, default=None, metavar="DATASET",
                   help="conditional models: give each sample the condition (label, caption, ...) of a random "
                        "image of DATASET (default: the --ref dataset)")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    add_model_arguments(p)
    add_lora_argument(p)
    add_guide_and_decoder_arguments(p)
    p.add_argument("--out", help="output folder (default: <checkpoint folder>/eval/<features>-n<N>-<sampler>...)")


def guide_id(guide: str) -> str:
    """A digest of the guide's model file (so a run folder whose latest checkpoint moves gets another tag)."""
    from ldmkit.checkpoint import resolve_model_file
    from ldmkit.errors import LdmkitError
    from ldmkit.pipeline.metadata import file_sha256

    try:
        key = file_sha256(resolve_model_file(guide)) or guide
    except LdmkitError:  # (not an ldmkit model; the loader says what is wrong with it)
        key = str(Path(guide).resolve())
    return hashlib.sha256(key.encode()).hexdigest()


def tiny_decoder_id(path: str) -> str:
    """A digest of the tiny decoder's weights file (a diffusers folder's too), else of its path."""
    from ldmkit.interop.tiny_decoder import weights_file
    from ldmkit.pipeline.metadata import file_sha256

    return file_sha256(weights_file(path)) or hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()


def default_reference(model_file: Path) -> str:
    """The dataset the run that wrote `model_file` trained on ('openmoji' or its folder)."""
    from ldmkit.checkpoint import load_model_file
    from ldmkit.errors import ConfigError

    _, _, metadata = load_model_file(model_file, kind="ldm")
    data = json.loads(metadata.get("ldmkit.run_config", "{}")).get("data", {})
    dataset = data.get("dataset", "openmoji")
    if dataset == "openmoji":
        return "openmoji"
    if dataset == "folder":
        return data["path"]
    raise ConfigError(f"the run trained on a '{dataset}' dataset; give the reference images with --ref "
                      "(an image folder, 'openmoji', or a .npz of statistics)")


def check_before_launch(args: argparse.Namespace) -> str:
    """With --processes: the options, checked once before the processes start; the device they will use."""
    check_arguments(args, args.processes)
    return args.device


def check_arguments(args: argparse.Namespace, processes: int) -> None:
    from ldmkit.errors import ConfigError

    if args.inception_weights and args.features != "inception":
        raise ConfigError(f"--inception-weights is for --features inception, but the features are {args.features}; "
                          "add --features inception (FID) or drop --inception-weights")
    for name in ("n", "batch_size", "kid_subsets", "kid_subset_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if processes > args.n:
        raise ConfigError(f"{processes} processes would share {args.n} samples, and some would have none; use at "
                          f"most {args.n} processes")


def run(args: argparse.Namespace) -> int:
    from ldmkit.checkpoint import resolve_model_file, write_text_atomic
    from ldmkit.data.images import make_grid
    from ldmkit.device import dtype_name
    from ldmkit.errors import ConfigError
    from ldmkit.evaluation.feature_networks import build_feature_network
    from ldmkit.evaluation.generation import DataConditions, check_conditions, generated_features
    from ldmkit.evaluation.reference import reference_dataset, reference_statistics
    from ldmkit.evaluation.sample_quality import markdown_table, sample_metrics
    from ldmkit.interop.compvis import find_original_pair
    from ldmkit.interop.foreign_models import find_diffusers_pipeline
    from ldmkit.training.distributed import setup_distributed, teardown_distributed

    check_arguments(args, int(os.environ.get("WORLD_SIZE", "1")))  # (the processes of torchrun, or of --processes)
    diffusers_folder = find_diffusers_pipeline(args.checkpoint)
    original = None if diffusers_folder else find_original_pair(args.checkpoint, args.config)  # CompVis pair
    if (original is not None or diffusers_folder is not None) and args.ref is None:
        raise ConfigError("an original CompVis checkpoint or a diffusers folder carries no dataset: give the "
                          "reference with --ref")
    model_file = diffusers_folder or (resolve_model_file(args.checkpoint) if original is None else original[0])
    config = args.config if diffusers_folder else (None if original is None else original[1])
    ref = args.ref or default_reference(model_file)
    tag = f"{args.features}-n{args.n}-{args.sampler}{args.steps}-g{args.guidance:g}-seed{args.seed}"
    tag += "-karras" * args.karras + (f"-cache{args.cache_interval}" if args.cache_interval else "")
    tag += f"-interval{args.guidance_interval[0]:g}-{args.guidance_interval[1]:g}" if args.guidance_interval else ""
    tag += "" if args.dtype == "auto" else f"-{args.dtype}"
    tag += f"-lora-{hashlib.sha256(' '.join(args.lora).encode()).hexdigest()[:8]}" if args.lora else ""
    tag += f"-guide-{guide_id(args.guide)[:8]}" if args.guide else ""
    tag += f"-tiny-{tiny_decoder_id(args.tiny_decoder)[:8]}" if args.tiny_decoder else ""
    out = output_folder(Path(args.out) if args.out else model_file.parent / "eval" / tag)
    ctx = setup_distributed(args.device)
    try:  # every input is checked (and the reference's statistics computed) before the first sample
        args.config = config  # (the YAML of a CompVis pair found beside its checkpoint, too)
        pipe = load_model(args, str(model_file), device=str(ctx.device))
        shortcuts = shortcut_options(args)
        pipe.check(args.steps, args.sampler, args.guidance, args.eta, **shortcuts)
        resolution = pipe.config.image_size
        conditions, source = None, None
        if args.condition_from_data is not None:
            source = ref if args.condition_from_data is True else args.condition_from_data
            if str(source).endswith(".npz"):
                raise ConfigError("--condition-from-data needs images with their labels/captions, not a .npz of "
                                  "statistics: name the dataset, e.g. --condition-from-data openmoji")
            if not pipe.config.conditioning.kinds:
                raise ConfigError("--condition-from-data gives each sample a condition, but this model is "
                                  "unconditional; drop it")
            conditions = DataConditions(reference_dataset(str(source), resolution, args.ref_split)[0], pipe,
                                        str(source))
        check_conditions(pipe, conditions)
        network = build_feature_network(args.features, args.inception_weights).to(ctx.device)
        stats = None
        if ctx.is_main:
            stats = reference_statistics(ref, network, resolution, args.ref_split, args.ref_n, args.batch_size,
                                         ctx.device)
        start = time.perf_counter()
        samples, preview = generated_features(
            pipe, network, args.n, args.seed, args.steps, args.sampler, args.guidance, args.eta, args.batch_size,
            conditions, ctx.rank, ctx.world_size, keep_images=64, **shortcuts)
        sampling_s = time.perf_counter() - start
        if not ctx.is_main:
            return 0
        metrics = sample_metrics(samples, stats, network, args.kid_subsets, args.kid_subset_size, seed=args.seed,
                                 device=ctx.device)
    finally:
        teardown_distributed(ctx)
    settings = {"checkpoint": str(model_file), "use_ema": not args.no_ema, "reference": str(ref),
                "reference_split": args.ref_split if not str(ref).endswith(".npz") else None,
                "resolution": resolution, "n": args.n, "steps": args.steps, "sampler": args.sampler,
                "eta": args.eta, "guidance": args.guidance, "seed": args.seed, **shortcuts,
                "conditions_from": None if conditions is None else str(source),
                "processes": ctx.world_size, "device": ctx.device.type,
                "dtype": dtype_name(pipe.dtype), "lora": args.lora or [],
                "guide": pipe.guide_record(), "tiny_decoder": pipe.tiny_decoder,
                "sampling_seconds": round(sampling_s, 1)}
    result = {**metrics, "settings": settings}
    table = markdown_table(metrics)
    write_text_atomic(make_folder(out) / "metrics.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(out / "metrics.md", f"{model_file} — {args.n} samples, {args.sampler} {args.steps} steps, "
                      f"guidance {args.guidance:g}{f' (guide: {args.guide})' if args.guide else ''}, "
                      f"{f'tiny decoder {args.tiny_decoder}, ' if args.tiny_decoder else ''}"
                      f"reference {ref}\n\n{table}")
    if preview is not None:
        make_grid(preview).save(out / "samples.png")
    print(table, end="")
    print(f"written: {out / 'metrics.json'}, {out / 'metrics.md'}, {out / 'samples.png'}{precision_note(args, pipe)}")
    return 0

"""`ldmkit eval-autoencoder CHECKPOINT`: PSNR, SSIM and perceptual distance on validation images.

Also reads the first stage of an original CompVis pair: `ldmkit eval-autoencoder model.ckpt --config model.yaml`
(an LDM or a first-stage model; see ldmkit/interop/compvis_autoencoder.py).
"""

from __future__ import annotations

import argparse
import json

from ldmkit.cli.common import make_folder, output_folder


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="run folder, checkpoint folder or model.safetensors of an autoencoder, or an "
                                      "original CompVis .ckpt/.safetensors (with --config): an LDM's first stage or "
                                      "a first-stage model")
    p.add_argument("--config", help="the original YAML when CHECKPOINT is a CompVis checkpoint")
    p.add_argument("--data", help="image folder to evaluate on (default: the run's dataset, else OpenMoji)")
    p.add_argument("--resolution", type=int, help="image size (default: the run's, else 64)")
    p.add_argument("--split", default="val", choices=["val", "train", "all"])
    p.add_argument("--max-images", type=int, help="evaluate only the first N images")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="folder for eval.json and the reconstruction grid (default: beside the checkpoint)")


def check_arguments(args: argparse.Namespace) -> None:
    """The numbers and the output folder, checked before anything loads."""
    from ldmkit.errors import ConfigError

    for flag, value in (("--batch-size", args.batch_size), ("--max-images", args.max_images)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be a whole number >= 1, got {value}"
                              + ("; drop it to evaluate every image" if flag == "--max-images" else ""))
    if args.resolution is not None and args.resolution < 8:
        raise ConfigError(f"--resolution must be a whole number of pixels >= 8, got {args.resolution}; use e.g. 64, "
                          "or drop it for the run's own")
    if args.out:
        output_folder(args.out)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ldmkit.autoencoder.checkpoint import load_autoencoder
    from ldmkit.checkpoint import load_model_file, resolve_model_file, write_text_atomic
    from ldmkit.config import from_dict
    from ldmkit.data import DataConfig, build_dataset
    from ldmkit.data.loader import fixed_images
    from ldmkit.device import pick_device
    from ldmkit.evaluation.autoencoder import evaluate_autoencoder, reconstruction_grid
    from ldmkit.features.perceptual import PerceptualConfig, build_perceptual
    from ldmkit.interop.compvis import find_original_pair
    from ldmkit.interop.compvis_autoencoder import load_compvis_autoencoder

    check_arguments(args)
    original = find_original_pair(args.checkpoint, args.config)  # (checkpoint, YAML) of a CompVis model
    if original is None:
        model_file = resolve_model_file(args.checkpoint)
        _, _, metadata = load_model_file(model_file, kind="autoencoder")
        run_cfg = json.loads(metadata.get("ldmkit.run_config", "{}"))
    else:  # no run config: the dataset and resolution defaults, or --data / --resolution
        model_file, run_cfg = original[0], {}
    data = from_dict(DataConfig, run_cfg.get("data", {}))
    if args.data:
        data = dataclasses.replace(data, dataset="folder", path=args.data)
    if args.resolution is not None:
        data = dataclasses.replace(data, resolution=args.resolution)
    device = pick_device(args.device)
    model = load_autoencoder(model_file) if original is None else load_compvis_autoencoder(*original)
    model = model.to(device).eval()
    dataset = build_dataset(data, args.split)
    max_batches = None if args.max_images is None else -(-args.max_images // args.batch_size)
    perceptual = build_perceptual(PerceptualConfig()).to(device)
    metrics = evaluate_autoencoder(model, dataset, perceptual, args.batch_size, device, max_batches)
    metrics = {"checkpoint": str(model_file), "dataset": data.dataset if data.dataset != "folder" else data.path,
               "split": args.split, "resolution": data.resolution, **metrics}
    out = make_folder(output_folder(args.out) if args.out else model_file.parent / "eval-autoencoder")
    write_text_atomic(out / "eval.json", json.dumps(metrics, indent=2) + "\n")
    fixed = fixed_images(dataset, 16).to(device)
    reconstruction_grid(model, fixed).save(out / "reconstructions.png")
    print("| metric | value |\n| --- | --- |")
    for key in ("psnr", "ssim", "perceptual", "codebook_usage", "images"):
        if key in metrics:
            value = metrics[key]
            print(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    print(f"written: {out / 'eval.json'}, {out / 'reconstructions.png'}")
    return 0

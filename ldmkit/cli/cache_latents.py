"""`ldmkit cache-latents CONFIG [--set ...]`: encode an LDM config's dataset once with its first stage."""

from __future__ import annotations

import argparse
import time

from ldmkit.cli.common import add_config_arguments, resolve_run_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, example="configs/ldm/emoji64-kl-f4.yaml", run_folder=False)  # (the cache goes where
    # `ldmkit train` looks for it: data.cache_dir, else $LDMKIT_CACHE or ~/.cache/ldmkit)
    p.add_argument("--batch-size", type=int, default=64)


def run(args: argparse.Namespace) -> int:
    from ldmkit.data.conditions import needs_images
    from ldmkit.data.latents import LatentCacheDataset
    from ldmkit.device import pick_device
    from ldmkit.errors import ConfigError
    from ldmkit.training.latent_cache import build_latent_cache, cached_views
    from ldmkit.training.ldm import LDMRunConfig, load_first_stage

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a whole number >= 1, got {args.batch_size}")
    cfg, _ = resolve_run_config(LDMRunConfig, args)
    start = time.perf_counter()
    store_images = needs_images(cfg.conditioning)  # SR / inpainting derive conditions from them
    folder = build_latent_cache(load_first_stage(cfg.first_stage), cfg.data, pick_device(cfg.train.device),
                                batch_size=args.batch_size, store_images=store_images,
                                views=cached_views(cfg.data, cfg.latent_cache_views))
    cache = LatentCacheDataset(folder)
    print(f"latent cache: {folder} ({len(cache)} latents, {time.perf_counter() - start:.1f} s)")
    return 0

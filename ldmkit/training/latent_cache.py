"""Building a latent cache: encode the training images once with the frozen first stage.

Training then reads latents instead of running the encoder every step (`ldmkit cache-latents`,
or automatically with `latent_cache: true`). The cache lives under the ldmkit cache folder, in a
sub-folder named by a hash of the first-stage weights, the data config and the number of views,
so it is rebuilt exactly when one changes. Flipped copies are encoded too when the data config
flips. With `data.crop: random` it stores `latent_cache_views` random crops of each image (each
also flipped with data.flip), and training draws one per sample from the sample's seed; with
`latent_cache_views: 0` there is no cache and every batch is cropped and encoded on the fly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from torch import nn

from ldmkit import paths
from ldmkit.checkpoint import save_model_file, write_text_atomic
from ldmkit.config import to_dict
from ldmkit.data import DataConfig, build_dataset, eval_loader
from ldmkit.data.config import data_fingerprint
from ldmkit.data.images import to_uint8
from ldmkit.data.latents import CACHE_VERSION, INDEX_FILE, LatentCacheDataset
from ldmkit.data.views import build_crop_views, crops_at_random
from ldmkit.errors import ConfigError, DataError
from ldmkit.fast import for_encoding
from ldmkit.progress import progress

SHARD_SIZE = 4096


def weights_digest(module: nn.Module) -> str:
    """A content hash of a module's tensors: which first stage produced a cache."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cached_views(data: DataConfig, latent_cache_views: int) -> int:
    """Entries a cache stores per image: `latent_cache_views` random crops when data.crop is random
    (0: no cache, crop and encode on the fly), else 1, the centre crop (OpenMoji and scenes never crop)."""
    return latent_cache_views if crops_at_random(data) else 1


NOT_CACHED = ("num_workers", "cache_dir", "balance")  # data settings that do not change what a cache holds


def cache_folder(first_stage: nn.Module, data: DataConfig, store_images: bool = False, views: int = 1) -> Path:
    fields = {"weights": weights_digest(first_stage), "kind": first_stage.config.kind,
              "images": store_images, "views": views,
              "data": {k: v for k, v in to_dict(data).items() if k not in NOT_CACHED},
              "version": CACHE_VERSION}
    contents = data_fingerprint(data)  # a user's folder or shards: edited files make another cache
    key = json.dumps({**fields, "contents": contents} if contents else fields, sort_keys=True)
    return paths.cache_dir(data.cache_dir) / "latents" / hashlib.sha1(key.encode()).hexdigest()[:16]


@torch.no_grad()
def _moments(first_stage: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    if first_stage.config.kind == "kl":
        posterior = first_stage.encode(x)
        return {"mean": posterior.mean.float(), "logvar": posterior.logvar.float()}
    return {"latent": first_stage.encode(x).float()}


@torch.no_grad()
def build_latent_cache(first_stage: nn.Module, data: DataConfig, device: torch.device, batch_size: int = 64,
                       folder: Path | None = None, store_images: bool = False, views: int = 1) -> Path:
    """Encode the training split into a cache folder: `views` random crops of each image with
    `data.crop: random` (see `cached_views`), else its one centre crop; flips as extra entries.

    With `store_images` the images themselves are kept too (uint8), for conditions computed from
    them (super-resolution, inpainting).
    """
    if views < 1:
        raise ConfigError(f"a latent cache stores at least 1 view per image, got {views}; with data.crop: random, "
                          "latent_cache_views: 0 means no cache (set latent_cache_views >= 1 to build one)")
    folder = folder or cache_folder(first_stage, data, store_images, views)
    if (folder / INDEX_FILE).is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)  # an incomplete earlier attempt
    folder.mkdir(parents=True)
    first_stage = for_encoding(first_stage.to(device).eval())  # float32 CPU encoding 1.1-1.5x faster
    if crops_at_random(data):
        dataset, desc = build_crop_views(data, views), f"encoding {views} random crops per image (once)"
    else:
        dataset, desc = build_dataset(data, "train", augment=False), "encoding latents (once)"
    batch_size = -(-batch_size // views) * views  # whole images per batch (an unreadable one drops all its views)
    shards, buffer = [], {}

    def flush() -> None:
        if not buffer:
            return
        name = f"shard-{len(shards):05d}.safetensors"
        tensors = {k: torch.cat(v) for k, v in buffer.items() if k != "captions"}
        save_model_file(folder / name, tensors, "latent-cache", {},
                        extra={"captions": json.dumps(sum(buffer["captions"], []))})
        shards.append({"file": name, "count": int(tensors["label"].shape[0]) // views})
        buffer.clear()

    for batch in progress(eval_loader(dataset, batch_size), desc=desc):
        if "image" not in batch:
            continue  # every file of the batch was unreadable
        if batch["image"].shape[0] % views:
            raise DataError(f"an image of {dataset} was readable for some of its {views} crops only; "
                            "check the data folder (files changing while the cache is built?) and run again")
        x = batch["image"].to(device)
        entries = _moments(first_stage, x)
        if data.flip:
            entries.update({k + "_flip": v for k, v in _moments(first_stage, x.flip(-1)).items()})
        if store_images:
            entries["image"] = torch.from_numpy(to_uint8(x.cpu())).movedim(-1, 1)  # (B, 3, H, W) uint8
            if data.flip:
                entries["image_flip"] = entries["image"].flip(-1)
        entries["label"] = batch["label"].long().cpu()
        for k, v in entries.items():
            buffer.setdefault(k, []).append(v.cpu())
        buffer.setdefault("captions", []).append(list(batch["caption"]))
        if sum(len(c) for c in buffer["captions"]) >= SHARD_SIZE:
            flush()
    flush()
    if not shards:
        raise DataError(f"no readable image in {dataset} to encode (every one was skipped: see the warnings "
                        "above); replace or delete the unreadable files, or add images")
    index = {"version": CACHE_VERSION, "kind": first_stage.config.kind, "flip": data.flip, "views": views,
             "shards": shards, "count": sum(s["count"] for s in shards),
             "class_names": list(getattr(dataset, "class_names", [])), "data": to_dict(data)}
    write_text_atomic(folder / INDEX_FILE, json.dumps(index, indent=1) + "\n")
    return folder


def latent_samples(cache: LatentCacheDataset, max_items: int = 10_000, seed: int = 0) -> torch.Tensor:
    """Posterior samples (n, C, h, w) of (up to) `max_items` cached latents, in float32."""
    generator = torch.Generator().manual_seed(seed)
    n = min(len(cache), max_items)
    rows = torch.randperm(len(cache), generator=generator)[:n]
    z = torch.stack([cache[(int(i), int(torch.randint(2**31, (1,), generator=generator)))]["latent"] for i in rows])
    return z.float()


def latent_std(cache: LatentCacheDataset, max_items: int = 10_000, seed: int = 0) -> float:
    """Std over all elements of posterior samples of (up to) `max_items` cached latents."""
    return float(latent_samples(cache, max_items, seed).std())

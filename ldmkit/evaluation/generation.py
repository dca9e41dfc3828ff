"""Generating N samples for evaluation: seeds sharded over ranks, conditions drawn from data, features gathered.

Sample i has seed `seed + i` (its start and step noise, as `Pipeline` draws them), whichever
rank makes it: rank r of W generates i = r, r + W, r + 2W, ..., and `all_gather_rows` puts the
features back in order of i. Samples are rounded to 8 bits before the feature network sees them
(`FeatureNetwork.preprocess`), as if written to PNG files and read back.

Conditional models: `DataConditions` gives sample i the condition of a random reference image
(picked by a generator seeded from sample i's seed), read from that image's data fields as training
reads them (`ldmkit.data.conditions`: labels, captions, boxes, maps, or the image itself for
super-resolution and inpainting), so the generated set matches the reference set's distribution
of conditions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, default_collate

from ldmkit.data.conditions import batch_condition, batch_keys
from ldmkit.data.folder import TOP_LEVEL_CLASS
from ldmkit.data.transforms import derive_seed, stream_generators
from ldmkit.errors import ConfigError
from ldmkit.evaluation.feature_networks import FeatureNetwork
from ldmkit.evaluation.sample_quality import SampleFeatures
from ldmkit.pipeline.generate import Pipeline
from ldmkit.progress import progress
from ldmkit.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS

if TYPE_CHECKING:
    from ldmkit.conditioning.config import ConditioningConfig

PICK_STREAM, PREPARE_STREAM = 101, 102  # random streams of a sample's seed: which reference image, its condition


class DataConditions:
    """seeds -> the condition of a batch (the conditioner's tensor form), from random samples of a dataset.

    A class-conditional model gets each image's class as the model's label for it (`model_labels`)."""

    def __init__(self, dataset: Dataset, pipe: Pipeline, source: str = "the dataset"):
        self.dataset, self.pipe = dataset, pipe
        self.labels = model_labels(pipe.config.conditioning, list(getattr(dataset, "class_names", [])), source)

    def picks(self, seeds: Sequence[int]) -> list[int]:
        """The reference index each seed takes its condition from."""
        return [int(torch.randint(len(self.dataset), (), generator=torch.Generator().manual_seed(
            derive_seed(int(s), PICK_STREAM)))) for s in seeds]

    def __call__(self, seeds: Sequence[int]) -> Any:
        batch = default_collate([self.dataset[j] for j in self.picks(seeds)])
        if self.labels is not None:
            batch["label"] = self.labels[torch.as_tensor(batch["label"]).long()]
        batch = {k: v.to(self.pipe.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        batch["seed"] = torch.tensor(list(seeds))
        return batch_condition(self.pipe.config.conditioning, batch, stream_generators(list(seeds), PREPARE_STREAM))


def model_labels(cfg: ConditioningConfig, classes: list[str], source: str) -> torch.Tensor | None:
    """For a class-conditional model: the model's label of each of a dataset's `classes` (its class_names,
    which its labels index): by name where the model names its classes, else index for index, which needs
    as many classes as the model has. None for other models. A clear error where they do not fit."""
    if "class" not in cfg.kinds or not classes:
        return None
    names, count = list(cfg.class_label.names), cfg.class_label.num_classes
    if classes == [TOP_LEVEL_CLASS]:
        theirs = f"named as the model's classes: {', '.join(names)}" if names else f"the model's {count} classes"
        raise ConfigError(f"--condition-from-data: {source} has no class sub-folders, so every sample would get one "
                          f"class; sort its images into one sub-folder per class ({theirs})")
    if TOP_LEVEL_CLASS in classes:
        raise ConfigError(f"--condition-from-data: {source} has images at its top level, outside any class "
                          "sub-folder; move them into the sub-folder of their class")
    if names:
        unknown = [name for name in classes if name not in names]
        if unknown:
            raise ConfigError(f"--condition-from-data: {source} has classes this model does not know "
                              f"({', '.join(map(repr, unknown))}); name its class sub-folders after the model's "
                              f"classes ({', '.join(names)}), or remove the others")
        return torch.tensor([names.index(name) for name in classes])
    if len(classes) != count:
        raise ConfigError(f"--condition-from-data: {source} has {len(classes)} classes ({', '.join(classes)}), but "
                          f"the model has {count} and no class names to match them by; give a dataset with {count} "
                          f"class sub-folders, which in sorted order are the model's labels 0 .. {count - 1}")
    return None


def check_conditions(pipe: Pipeline, conditions: Callable | None) -> None:
    """A conditional model cannot be evaluated without a source of conditions."""
    kind = pipe.config.conditioning.kind
    if kind != "none" and conditions is None:
        keys = ", ".join(batch_keys(pipe.config.conditioning))
        raise ConfigError(f"this model is conditioned on '{kind}' (it reads {keys} of a data sample); pass "
                          "--condition-from-data to give each sample the condition of a random reference image")


def all_gather_rows(local: torch.Tensor, n: int, rank: int, world_size: int) -> torch.Tensor:
    """(n_local, D) rows of indices rank, rank + W, ... from every rank -> (n, D) in index order."""
    if world_size == 1:
        return local
    rows = -(-n // world_size)
    padded = local.new_zeros(rows, *local.shape[1:])
    padded[:local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded)
    stacked = torch.stack(parts, dim=1)  # (rows, W, D): [j, r] is index j W + r
    return stacked.reshape(rows * world_size, *local.shape[1:])[:n]


@torch.no_grad()
def generated_features(pipe: Pipeline, network: FeatureNetwork, n: int, seed: int = 0, steps: int = DEFAULT_STEPS,
                       sampler: str = DEFAULT_SAMPLER, guidance: float = 1.0, eta: float | None = None,
                       batch_size: int = 16,
                       conditions: Callable[[Sequence[int]], Any] | None = None, rank: int = 0, world_size: int = 1,
                       keep_images: int = 0, **shortcuts) -> tuple[SampleFeatures, torch.Tensor | None]:
    """Features of samples 0..n-1 (this rank's share generated here, all gathered), and rank 0's first images.

    `network` must be on `pipe.device`. Returns the features of all n samples on every rank, and
    up to `keep_images` of this rank's images (B, 3, H, W) in [-1, 1] on CPU (for a preview grid).
    `shortcuts`: the sampling shortcuts of `Pipeline.latents` (karras, guidance_interval, cache_interval).
    """
    check_conditions(pipe, conditions)
    if n < 1 or batch_size < 1:
        raise ConfigError(f"n and batch_size must be at least 1, got n={n}, batch_size={batch_size}")
    indices = list(range(rank, n, world_size))
    feats, logits, kept = [], [], []
    desc = "sampling + features" + (f" (rank 0 of {world_size})" if world_size > 1 else "")
    bar = progress(total=len(indices), desc=desc, unit="img", disable=rank != 0)
    for start in range(0, len(indices), batch_size):
        seeds = [seed + i for i in indices[start:start + batch_size]]
        raw = conditions(seeds) if conditions is not None else None

        def show_step(info: dict) -> None:
            bar.set_postfix(step=f"{info['i'] + 1}/{info['steps']}", refresh=False)

        images = pipe.decode(pipe.latents(seeds, raw, steps, sampler, guidance, eta, callback=show_step, **shortcuts))
        f, lg = network(images)  # (B, D), (B, K)
        feats.append(f)
        logits.append(lg)
        if len(kept) * batch_size < keep_images:
            kept.append(images.cpu())
        bar.update(len(seeds))
    bar.close()
    dim = network.feature_dim
    if feats:
        local = torch.cat([torch.cat(feats), torch.cat(logits)], dim=1)  # (n_local, D + K)
    else:  # more ranks than samples
        local = torch.zeros(0, dim + network.num_classes, device=pipe.device)
    both = all_gather_rows(local, n, rank, world_size).cpu()  # (n, D + K)
    preview = torch.cat(kept)[:keep_images] if kept else None
    return SampleFeatures(both[:, :dim], both[:, dim:], network.key), preview

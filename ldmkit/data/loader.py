"""Batches for training and evaluation: resumable, rank-sharded streams and skipped-file counting."""

from __future__ import annotations

import itertools

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

from ldmkit.data.sampler import EpochSampler


def collate_skipping(samples: list[dict | None]) -> dict:
    """default_collate over the readable samples; `skipped` counts the unreadable ones."""
    good = [s for s in samples if s is not None]
    batch = default_collate(good) if good else {}
    batch["skipped"] = len(samples) - len(good)
    return batch


class WithSeed(Dataset):
    """Adds each sample's seed (from its `(index, seed)` key) to the sample dict."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        sample = self.dataset[key]
        if sample is not None:
            sample["seed"] = key[1]
        return sample


def train_loader(dataset: Dataset, batch_size: int, seed: int, start_batches: int = 0, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0) -> DataLoader:
    """An endless shuffled stream of `batch_size` batches for this rank, resuming after `start_batches`.

    Every sample carries its "seed" (augmentation, posterior and diffusion noise derive from it).
    Map-style datasets go through `EpochSampler`; streams (WebDataset) shard and resume themselves.
    """
    if isinstance(dataset, IterableDataset):
        dataset.seed, dataset.rank, dataset.world_size = seed, rank, world_size
        dataset.batch_size, dataset.start_batches = batch_size, start_batches
        return DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skipping, num_workers=num_workers,
                          persistent_workers=num_workers > 0)
    sampler = EpochSampler(len(dataset), seed=seed, rank=rank, world_size=world_size,
                           start=start_batches * batch_size)
    return DataLoader(WithSeed(dataset), batch_size=batch_size, sampler=sampler, collate_fn=collate_skipping,
                      num_workers=num_workers, persistent_workers=num_workers > 0, drop_last=True)


def fixed_batch(dataset: Dataset, k: int) -> dict:
    """A collated batch of k' <= k fixed samples (for grids): spread over a map-style dataset, the
    first ones of a stream; unreadable samples are left out."""
    if isinstance(dataset, IterableDataset):
        samples = [s for s in itertools.islice(iter(dataset), 4 * k) if s is not None][:k]
    else:
        n = len(dataset)
        samples = [dataset[i] for i in sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(min(k, n))})]
        samples = [s for s in samples if s is not None]
    return default_collate(samples)


def fixed_images(dataset: Dataset, k: int) -> torch.Tensor:
    """(k', 3, H, W) images of `fixed_batch`."""
    return fixed_batch(dataset, k)["image"]


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """One ordered pass over the dataset, without augmentation."""
    shuffle = None if isinstance(dataset, IterableDataset) else False
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_skipping,
                      num_workers=num_workers)

"""A resumable, rank-sharded, epoch-shuffling sampler that also hands out per-sample seeds.

It yields keys `(index, seed)`: the dataset draws that sample's augmentation (crop, flip) from
`seed`, so a run is reproducible and resumable exactly from any number of consumed samples,
whatever the number of DataLoader workers.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Endless stream over epochs of a size-`n` dataset, seen by `rank` of `world_size` ranks.

    Epoch e is a permutation drawn from `seed + e`; rank r takes positions r, r+W, r+2W, ...
    so the union of all ranks' b-sized batches at step s equals one W*b-sized batch at step s
    of a single-process run. `start` skips that many samples of this rank (for resuming).
    With `weights` (n,), an epoch is instead n draws with replacement, sample i with probability
    proportional to weights[i] (`class_balance`), from the same seed.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 start: int = 0, augment: bool = True, weights: torch.Tensor | None = None):
        if n < world_size:
            raise ValueError(f"dataset of {n} samples is smaller than the {world_size} ranks")
        if weights is not None and weights.shape != (n,):
            raise ValueError(f"weights {tuple(weights.shape)} for a dataset of {n} samples")
        self.weights = weights
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size, self.start, self.augment = rank, world_size, start, augment
        self.per_rank = n // world_size  # drop the tail so every rank sees the same count

    def epoch_order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        generator = torch.Generator().manual_seed(self.seed + epoch)
        if self.weights is not None:
            return torch.multinomial(self.weights, self.n, replacement=True, generator=generator)
        return torch.randperm(self.n, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int | None]]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            order = self.epoch_order(epoch)
            for i in range(offset, self.per_rank):
                position = i * self.world_size + self.rank
                # one seed per (epoch, position): independent of rank count and workers
                seed = (self.seed * 1_000_003 + epoch * self.n + position) % (2**63) if self.augment else None
                yield int(order[position]), seed
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # one epoch; the stream itself is endless
        return self.per_rank


def class_balance(labels: torch.Tensor) -> torch.Tensor:
    """Sampling weights (n,) for labels (n,) that draw every class present equally often: 1 / its count."""
    counts = torch.bincount(labels)
    return 1.0 / counts[labels].double()

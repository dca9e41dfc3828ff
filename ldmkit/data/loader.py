"""Batches for training and evaluation: the resumable sampler, workers, and skipped-file counting."""

from __future__ import annotations

from torch.utils.data import DataLoader, Dataset, default_collate

from ldmkit.data.sampler import EpochSampler


def collate_skipping(samples: list[dict | None]) -> dict:
    """default_collate over the readable samples; `skipped` counts the unreadable ones."""
    good = [s for s in samples if s is not None]
    batch = default_collate(good) if good else {}
    batch["skipped"] = len(samples) - len(good)
    return batch


def train_loader(dataset: Dataset, batch_size: int, seed: int, start: int = 0, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0) -> DataLoader:
    """An endless shuffled stream of batches, resuming after `start` samples of this rank."""
    sampler = EpochSampler(len(dataset), seed=seed, rank=rank, world_size=world_size, start=start)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_skipping,
                      num_workers=num_workers, persistent_workers=num_workers > 0, drop_last=True)


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """One ordered pass over the dataset, without augmentation."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_skipping,
                      num_workers=num_workers)

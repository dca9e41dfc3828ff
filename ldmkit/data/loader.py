"""Batches for training and evaluation: resumable, rank-sharded streams and skipped-file counting."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

from ldmkit.data.sampler import EpochSampler, class_balance
from ldmkit.errors import ConfigError, DataError

STREAM_LOOKAHEAD = 1000  # samples of a stream that fixed_batch reads at most


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
                 world_size: int = 1, num_workers: int = 0, balance: str = "none") -> Iterator[dict]:
    """An endless shuffled stream of `batch_size` batches for this rank, resuming after `start_batches`.

    Every sample carries its "seed" (augmentation, posterior and diffusion noise derive from it).
    Map-style datasets go through `EpochSampler`; streams (WebDataset) shard and resume themselves.
    A batch whose every sample was unreadable is left out; its count moves on to the next batch.
    `balance` is data.balance: "classes" draws every class of the dataset's `labels()` equally often.
    """
    weights = class_balance(dataset_labels(dataset)) if balance == "classes" else None
    if isinstance(dataset, IterableDataset):
        dataset.seed, dataset.rank, dataset.world_size = seed, rank, world_size
        dataset.batch_size, dataset.start_batches = batch_size, start_batches
        loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skipping, num_workers=num_workers,
                            persistent_workers=num_workers > 0)
    else:
        sampler = EpochSampler(len(dataset), seed=seed, rank=rank, world_size=world_size,
                               start=start_batches * batch_size, weights=weights)
        loader = DataLoader(WithSeed(dataset), batch_size=batch_size, sampler=sampler, collate_fn=collate_skipping,
                            num_workers=num_workers, persistent_workers=num_workers > 0, drop_last=True)
    return _readable(loader)


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """(n,) class labels of a map-style dataset, from its `labels()` (no image is read)."""
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "labels"):
        raise ConfigError(f"data.balance: classes needs the class label of every sample, which {dataset} cannot "
                          "list; set data.balance: none")
    return dataset.labels()


def balance_note(dataset: Dataset, names: list[str] | tuple[str, ...]) -> str:
    """What data.balance: classes does to this dataset, for the training log."""
    counts = torch.bincount(dataset_labels(dataset))
    present = [(names[i] if i < len(names) else str(i), int(c)) for i, c in enumerate(counts) if c > 0]
    (low, n_low), (high, n_high) = min(present, key=lambda x: x[1]), max(present, key=lambda x: x[1])
    return (f"data.balance: classes: each of {len(present)} classes is drawn 1/{len(present)} of the time "
            f"({low}: {n_low} images, each drawn {n_high / n_low:.1f}x as often as one of {high}: {n_high})")


def _readable(batches: Iterable[dict]) -> Iterator[dict]:
    skipped = 0
    for batch in batches:
        if len(batch) == 1:  # only "skipped": every sample of the batch was unreadable
            skipped += batch["skipped"]
            continue
        batch["skipped"] += skipped
        skipped = 0
        yield batch


def fixed_batch(dataset: Dataset, k: int) -> dict:
    """A collated batch of k' <= k fixed readable samples (for grids): spread over a map-style dataset
    (the next ones stand in for unreadable ones), the first ones of a stream. A DataError when none is."""
    if isinstance(dataset, IterableDataset):
        tried = max(4 * k, STREAM_LOOKAHEAD)
        samples = [s for s in itertools.islice(iter(dataset), tried) if s is not None][:k]
        where = f"the first {tried} samples (or all, if fewer) of {dataset}"
    else:
        n = len(dataset)
        spread = {round(i * (n - 1) / max(k - 1, 1)) for i in range(min(k, n))}
        order = itertools.chain(sorted(spread), (i for i in range(n) if i not in spread))
        samples = list(itertools.islice((s for s in map(dataset.__getitem__, order) if s is not None), k))
        where = f"all {n} samples of {dataset}"
    if not samples:
        raise DataError(f"no readable sample among {where}: every one was skipped (see the warnings above); "
                        "replace or delete the unreadable files, or add images (a validation split also grows "
                        "with data.val_fraction)")
    return default_collate(samples)


def check_readable(dataset: Dataset) -> None:
    """A DataError at start-up, not a stall or crash mid-run, when `dataset` has no readable sample."""
    fixed_batch(dataset, 1)


def fixed_images(dataset: Dataset, k: int) -> torch.Tensor:
    """(k', 3, H, W) images of `fixed_batch`."""
    return fixed_batch(dataset, k)["image"]


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """One ordered pass over the dataset, without augmentation."""
    shuffle = None if isinstance(dataset, IterableDataset) else False
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_skipping,
                      num_workers=num_workers)

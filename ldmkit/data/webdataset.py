"""WebDataset tar shards, the format LAION-style datasets ship in, streamed sample by sample.

A shard is a plain tar whose members are grouped by key (the name up to the first dot):
`KEY.jpg|jpeg|png|webp` the image, optional `KEY.txt` its caption and `KEY.cls` its integer class.
`path` names the shards with brace ranges and/or globs: `data/shard-{00000..00127}.tar`.

Streaming: every epoch visits the shards in an order shuffled by `seed + epoch`; shard i of that
order goes to global worker i mod (ranks x workers), so data is sharded by rank (and by
DataLoader worker) without reading anything twice. A sample's seed, which drives its crop, flip
and diffusion noise, is a hash of (seed, epoch, shard, position in shard): independent of the
number of ranks and workers. `start_batches` resumes a stream exactly where it stopped.
Validation: a sample is held out when a hash of its key falls in `val_fraction`.
"""

from __future__ import annotations

import glob
import io
import itertools
import logging
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from ldmkit.checkpoint import atomic_path
from ldmkit.data.folder import in_validation
from ldmkit.data.images import IMAGE_SUFFIXES, flatten_to_rgb, to_tensor
from ldmkit.data.transforms import Crop, random_flip, resize_and_crop, sample_generator
from ldmkit.errors import DataError

log = logging.getLogger(__name__)
_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_shards(pattern: str) -> list[Path]:
    """'a-{000..002}.tar' -> [a-000.tar, a-001.tar, a-002.tar]; globs are expanded too; sorted."""
    match = _BRACE.search(pattern)
    if match:
        lo, hi = match.group(1), match.group(2)
        names = [pattern[:match.start()] + str(i).zfill(len(lo)) + pattern[match.end():]
                 for i in range(int(lo), int(hi) + 1)]
        return sorted({p for name in names for p in expand_shards(name)})
    found = sorted(Path(p) for p in glob.glob(pattern)) if any(c in pattern for c in "*?[") else [Path(pattern)]
    missing = [p for p in found if not p.is_file()]
    if missing or not found:
        raise DataError(f"WebDataset shard {missing[0] if missing else pattern} does not exist")
    return found


def read_shard(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) groups of consecutive members of one tar shard."""
    key, group = None, {}
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = Path(member.name).name
                stem, _, ext = name.partition(".")
                if stem != key and group:
                    yield key, group
                    group = {}
                key = stem
                group[ext.lower()] = tar.extractfile(member).read()
    except tarfile.TarError as err:
        raise DataError(f"WebDataset shard {path} is not a readable tar file ({err})") from err
    if group:
        yield key, group


def decode_sample(key: str, group: dict[str, bytes]) -> dict | None:
    """{"image": PIL RGB, "caption": str, "label": int} or None (logged) when unusable."""
    image_ext = next((e for e in group if "." + e in IMAGE_SUFFIXES), None)
    if image_ext is None:
        log.warning("skipping WebDataset sample %s: no jpg/png/webp member", key)
        return None
    try:
        with Image.open(io.BytesIO(group[image_ext])) as img:
            img.load()
            image = flatten_to_rgb(img)
    except (OSError, ValueError, SyntaxError) as err:
        log.warning("skipping WebDataset sample %s: cannot read its image (%s)", key, err)
        return None
    caption = group["txt"].decode("utf-8").strip() if "txt" in group else ""
    label = int(group["cls"].decode().strip()) if "cls" in group else 0
    return {"image": image, "caption": caption, "label": label}


class WebDatasetStream(IterableDataset):
    """An endless (or one-epoch, `epochs=1`) stream of samples like the folder dataset's, plus "seed"."""

    def __init__(self, pattern: str, resolution: int, split: str = "train", crop: Crop = "center",
                 flip: bool = False, val_fraction: float = 0.05, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1, batch_size: int = 1, start_batches: int = 0,
                 epochs: int | None = None):
        self.shards = expand_shards(pattern)
        self.resolution, self.split, self.crop, self.flip = resolution, split, crop, flip
        self.val_fraction, self.seed, self.shuffle = val_fraction, seed, shuffle
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.start_batches, self.epochs = start_batches, epochs
        self.class_names: list[str] = []

    def _wanted(self, key: str) -> bool:
        if self.split == "all":
            return True
        return in_validation(Path(key), self.val_fraction) == (self.split == "val")

    def __iter__(self) -> Iterator[dict | None]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        slot, slots = self.rank * workers + worker, self.world_size * workers
        if len(self.shards) < slots:
            raise DataError(f"{len(self.shards)} WebDataset shards cannot feed {self.world_size} ranks x {workers} "
                            "workers; use fewer data.num_workers or split the data into more shards")
        # DataLoader takes batch j from worker j mod workers: this worker's share of what was consumed
        skip = max(0, -(-(self.start_batches - worker) // workers)) * self.batch_size
        epochs = itertools.count() if self.epochs is None else range(self.epochs)
        for epoch in epochs:
            order = list(range(len(self.shards)))
            if self.shuffle:
                order = torch.randperm(len(order), generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
            for shard in order[slot::slots]:
                for position, (key, group) in enumerate(read_shard(self.shards[shard])):
                    if not self._wanted(key):
                        continue
                    if skip:
                        skip -= 1
                        continue
                    yield self._sample(key, group, epoch, shard, position)

    def _sample(self, key: str, group: dict[str, bytes], epoch: int, shard: int, position: int) -> dict | None:
        decoded = decode_sample(key, group)
        if decoded is None:
            return None
        seed = (((self.seed * 1_000_003 + epoch) * 1_000_003 + shard) * 1_000_003 + position) % (2**63)
        seed = seed if self.shuffle else None
        generator = sample_generator(seed)
        if self.crop == "random" and generator is None:
            generator = sample_generator(position)
        image = to_tensor(resize_and_crop(decoded["image"], self.resolution, self.crop, generator))
        if self.flip:
            image = random_flip(image, generator)
        return {"image": image, "caption": decoded["caption"], "label": decoded["label"], "key": key,
                "seed": seed if seed is not None else position}


def write_shards(samples: Iterable[dict], out_pattern: str, shard_size: int = 1000) -> list[Path]:
    """Write {"key", "image" (PIL, or encoded bytes with "ext"), "caption"?, "label"?} as tar shards.

    `out_pattern` formats the shard number, e.g. `shards/part-{:05d}.tar`; each shard is written
    under a temporary name and renamed when complete.
    """
    written: list[Path] = []
    samples = iter(samples)
    while chunk := list(itertools.islice(samples, shard_size)):
        path = Path(out_pattern.format(len(written)))
        with atomic_path(path) as tmp, tarfile.open(tmp, "w") as tar:
            for sample in chunk:
                for ext, data in _members(sample).items():
                    info = tarfile.TarInfo(f"{sample['key']}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        written.append(path)
    return written


def _members(sample: dict) -> dict[str, bytes]:
    if isinstance(sample["image"], Image.Image):
        buffer = io.BytesIO()
        sample["image"].save(buffer, format="PNG")
        members = {"png": buffer.getvalue()}
    else:
        members = {sample.get("ext", "jpg"): sample["image"]}
    if sample.get("caption"):
        members["txt"] = sample["caption"].encode("utf-8")
    if sample.get("label") is not None:
        members["cls"] = str(int(sample["label"])).encode()
    return members

"""WebDataset tar shards, the format LAION-style datasets ship in, streamed sample by sample.

A shard is a plain tar whose members are grouped by key (the name up to the first dot):
`KEY.jpg|jpeg|png|webp` the image, optional `KEY.txt` its caption and `KEY.cls` its integer class.
`path` names the shards with brace ranges and/or globs: `data/shard-{00000..00127}.tar`.

Streaming: every epoch visits the shards in an order shuffled by `seed + epoch`; shard i of that
order goes to global worker i mod (ranks x workers), so data is sharded by rank (and by
DataLoader worker) without reading anything twice. A sample's seed, which drives its crop, flip
and diffusion noise, is a hash of (seed, epoch, shard, position in shard): independent of the
number of ranks and workers. `start_batches` resumes a stream exactly where it stopped.
Validation: a sample is held out when a hash of its key falls in `val_fraction`. A sample whose
image, caption or class cannot be decoded is skipped with a warning (and counted).
Writing (`write_shards`, `ldmkit make-shards`): the output names take the same brace range (or a
format field, `part-{:05d}.tar`).
"""

from __future__ import annotations

import functools
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
from ldmkit.data.images import IMAGE_SUFFIXES, read_image, to_tensor
from ldmkit.data.transforms import Crop, random_flip, resize_and_crop, sample_generator, view_seed
from ldmkit.errors import ConfigError, DataError

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


def decode_sample(key: str, group: dict[str, bytes], shard: Path | str = "") -> dict | None:
    """{"image": PIL RGB, "caption": str, "label": int} or None (logged) when any member is unusable."""
    where = f"{key} of {shard}" if shard else key
    image_ext = next((e for e in group if "." + e in IMAGE_SUFFIXES), None)
    if image_ext is None:
        _skipping(where, "no jpg/png/webp member")
        return None
    try:
        image = read_image(group[image_ext], f"its image {key}.{image_ext}")
        caption = _text(group, "txt", key).strip()
        label = _label(group, key)
    except DataError as err:
        _skipping(where, str(err))
        return None
    return {"image": image, "caption": caption, "label": label}


@functools.cache  # once per sample and process: the epochs after the first skip it silently
def _skipping(where: str, why: str) -> None:
    log.warning("skipping WebDataset sample %s: %s", where, why)


def _text(group: dict[str, bytes], ext: str, key: str) -> str:
    try:
        return group[ext].decode("utf-8") if ext in group else ""
    except UnicodeDecodeError as err:
        raise DataError(f"its member {key}.{ext} is not UTF-8 text ({err.reason} at byte {err.start}); "
                        "rewrite it as UTF-8") from err


def _label(group: dict[str, bytes], key: str) -> int:
    text = _text(group, "cls", key).strip()
    try:
        return int(text) if "cls" in group else 0
    except ValueError as err:
        raise DataError(f"its class {key}.cls is {text[:40]!r}, not an integer; write the class index") from err


class WebDatasetStream(IterableDataset):
    """An endless (or one-epoch, `epochs=1`) stream of samples like the folder dataset's, plus "seed".

    `views` > 1 (the latent cache's stored crops): every sample comes `views` times in a row, view k
    cropped with the fixed seed `view_seed(sample seed, k)`.
    """

    def __init__(self, pattern: str, resolution: int, split: str = "train", crop: Crop = "center",
                 flip: bool = False, val_fraction: float = 0.05, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1, batch_size: int = 1, start_batches: int = 0,
                 epochs: int | None = None, views: int = 1):
        self.pattern, self.shards = pattern, expand_shards(pattern)
        self.resolution, self.split, self.crop, self.flip = resolution, split, crop, flip
        self.val_fraction, self.seed, self.shuffle = val_fraction, seed, shuffle
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.start_batches, self.epochs, self.views = start_batches, epochs, views
        self.class_names: list[str] = []

    def __str__(self) -> str:
        return f"the '{self.split}' split of WebDataset shards {self.pattern}"

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
                    yield from self._samples(key, group, epoch, shard, position)

    def _samples(self, key: str, group: dict[str, bytes], epoch: int, shard: int,
                 position: int) -> Iterator[dict | None]:
        """The sample (`views` crops of it), or None for each when it is unreadable."""
        decoded = decode_sample(key, group, self.shards[shard])
        seed = (((self.seed * 1_000_003 + epoch) * 1_000_003 + shard) * 1_000_003 + position) % (2**63)
        for view in range(self.views):
            if decoded is None:
                yield None
                continue
            if self.views > 1:
                generator = sample_generator(view_seed(seed, view))
            elif self.shuffle:
                generator = sample_generator(seed)
            else:  # an ordered pass: no flips, and a fixed view when cropping at random
                generator = sample_generator(position) if self.crop == "random" else None
            image = to_tensor(resize_and_crop(decoded["image"], self.resolution, self.crop, generator))
            if self.flip:
                image = random_flip(image, generator)
            yield {"image": image, "caption": decoded["caption"], "label": decoded["label"], "key": key,
                   "seed": seed if self.shuffle else position}


def shard_names(pattern: str) -> Iterator[Path]:
    """The names of output shards in order. `pattern` holds a brace range, `shards/part-{00000..00099}.tar`
    (its numbers, zero-padded to the width of its start; no more than it holds), or a format field,
    `shards/part-{:05d}.tar` (0, 1, 2, ...)."""
    brace = _BRACE.search(pattern)
    if brace:
        lo, hi = brace.groups()
        head, tail = pattern[:brace.start()], pattern[brace.end():]
        if "{" in head + tail:
            raise ConfigError(f"shard names {pattern!r} have more than one number field; keep one brace range")
        return (Path(head + str(i).zfill(len(lo)) + tail) for i in range(int(lo), int(hi) + 1))
    try:
        numbered = pattern.format(0) != pattern.format(1)
    except (IndexError, KeyError, ValueError, AttributeError, TypeError):
        numbered = False
    if not numbered:
        raise ConfigError(f"shard names {pattern!r} need one number field for the shard index: a brace range, "
                          "e.g. shards/part-{00000..00099}.tar, or a format field, e.g. shards/part-{:05d}.tar")
    return (Path(pattern.format(i)) for i in itertools.count())


def output_shards(pattern: str, count: int) -> list[Path]:
    """The names of the first `count` shards of `pattern` (see `shard_names`); a ConfigError when its brace
    range holds fewer, so that nothing is written."""
    names = list(itertools.islice(shard_names(pattern), count))
    if len(names) < count:
        raise ConfigError(f"{count} shards are needed but {pattern!r} numbers only {len(names)}; widen its brace "
                          f"range to hold {count}, or put more samples in each shard (--shard-size)")
    return names


def write_shards(samples: Iterable[dict], out_pattern: str, shard_size: int = 1000) -> list[Path]:
    """Write {"key", "image" (PIL, or encoded bytes with "ext"), "caption"?, "label"?} as tar shards.

    `out_pattern` numbers the shards (see `shard_names`), e.g. `shards/part-{:05d}.tar`; each shard
    is written under a temporary name and renamed when complete.
    """
    if shard_size < 1:
        raise ConfigError(f"a shard must hold at least 1 sample, got a shard size of {shard_size}; "
                          "pass a positive number of samples per shard, e.g. 1000")
    names, written = shard_names(out_pattern), []
    samples = iter(samples)
    while chunk := list(itertools.islice(samples, shard_size)):
        path = next(names, None)
        if path is None:
            raise ConfigError(f"{out_pattern!r} numbers only {len(written)} shards and samples remain; widen "
                              "its brace range, or put more samples in each shard (--shard-size)")
        try:
            with atomic_path(path) as tmp, tarfile.open(tmp, "w") as tar:
                for sample in chunk:
                    for ext, data in _members(sample).items():
                        info = tarfile.TarInfo(f"{sample['key']}.{ext}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
        except OSError as err:
            raise DataError(f"cannot write shard {path}: {err}; choose a writable output folder with free "
                            "space") from err
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

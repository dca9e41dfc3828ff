"""`ldmkit make-shards IMAGE_FOLDER OUT_PATTERN`: pack an image folder into WebDataset tar shards.

Files are stored as they are (no re-encoding) with their caption (`.txt`) and class (`.cls`, the
index of their first sub-folder). OUT_PATTERN numbers the shards with a brace range, as
`data.path` reads them (`shards/part-{00000..00099}.tar`: zero-padded to its width, and it must
hold enough shards), or with a format field (`shards/part-{:05d}.tar`). A file whose bytes or
caption cannot be read is skipped with a warning and counted.
"""

from __future__ import annotations

import argparse
import logging
import re
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="image folder (recursive; class = first sub-folder; caption = name.txt)")
    p.add_argument("out", help="output shard names with a number field, e.g. shards/part-{00000..00099}.tar "
                               "or shards/part-{:05d}.tar")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard")


def run(args: argparse.Namespace) -> int:
    from ldmkit.data.folder import ImageFolderDataset
    from ldmkit.data.images import read_image
    from ldmkit.data.webdataset import output_shards, write_shards
    from ldmkit.errors import ConfigError, DataError

    if args.shard_size < 1:
        raise ConfigError(f"--shard-size {args.shard_size}: a shard holds at least 1 sample; pass the number of "
                          "samples per shard, e.g. --shard-size 1000")
    ds = ImageFolderDataset(args.folder, resolution=1, split="all")
    # the names, and a writable folder, are checked before anything is written
    first = output_shards(args.out, -(-len(ds.files) // args.shard_size))[0]
    try:
        first.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=first.parent).close()
    except OSError as err:
        raise DataError(f"cannot write shards into {first.parent} ({err.strerror or err}); choose a writable "
                        "output folder") from err
    skipped = 0

    def samples():
        nonlocal skipped
        for i, relative in enumerate(ds.files):
            path = ds.root / relative
            try:
                image, caption = path.read_bytes(), ds.caption(i)
                read_image(image, f"image {path}", convert=lambda img: None)  # decodes: corrupt files stay out
            except OSError as err:
                image, caption = None, f"cannot read {path}: {err.strerror or err}"
            except DataError as err:
                image, caption = None, str(err)
            if image is None:
                log.warning("skipping %s", caption)
                skipped += 1
                continue
            yield {"key": f"{i:09d}", "image": image, "ext": path.suffix.lstrip(".").lower(),
                   "caption": caption, "label": ds.class_names.index(ds.class_of(relative))}

    paths = write_shards(samples(), args.out, args.shard_size)
    if not paths:
        raise DataError(f"none of the {len(ds.files)} files under {ds.root} could be read (see the warnings "
                        "above); fix their permissions or replace them")
    print(f"wrote {len(ds.files) - skipped} samples into {len(paths)} shards: {paths[0]} ... {paths[-1]}"
          + (f" ({skipped} unreadable files skipped)" if skipped else ""))
    if pattern := _brace_range(paths):
        print(f"read them with data.path: {pattern}")
    print(f"classes (.cls index -> name): {dict(enumerate(ds.class_names))}")
    return 0


def _brace_range(paths: list[Path]) -> str | None:
    """The brace pattern that names exactly `paths` (numbered alike, as `expand_shards` reads it), if any."""
    first, last = (re.fullmatch(r"(.*?)(\d+)(\D*)", str(p)) for p in (paths[0], paths[-1]))
    if not (first and last):
        return None
    head, lo, tail = first.groups()
    names = [f"{head}{str(i).zfill(len(lo))}{tail}" for i in range(int(lo), int(last.group(2)) + 1)]
    if names != [str(p) for p in paths]:
        return None
    return f"{head}{{{lo}..{last.group(2)}}}{tail}" if len(paths) > 1 else str(paths[0])

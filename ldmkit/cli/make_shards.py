"""`ldmkit make-shards IMAGE_FOLDER OUT_PATTERN`: pack an image folder into WebDataset tar shards.

Files are stored as they are (no re-encoding) with their caption (`.txt`) and class (`.cls`, the
index of their first sub-folder), e.g. `ldmkit make-shards photos/ shards/part-{:05d}.tar`.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="image folder (recursive; class = first sub-folder; caption = name.txt)")
    p.add_argument("out", help="output shard names with a number field, e.g. shards/part-{:05d}.tar")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard")


def run(args: argparse.Namespace) -> int:
    from ldmkit.data.folder import ImageFolderDataset
    from ldmkit.data.webdataset import write_shards
    from ldmkit.errors import ConfigError

    if "{" not in args.out:
        raise ConfigError(f"OUT {args.out!r} needs a number field for the shard index, e.g. shards/part-{{:05d}}.tar")
    ds = ImageFolderDataset(args.folder, resolution=1, split="all")

    def samples():
        for i, relative in enumerate(ds.files):
            path = ds.root / relative
            yield {"key": f"{i:09d}", "image": path.read_bytes(), "ext": path.suffix.lstrip(".").lower(),
                   "caption": ds.caption(i), "label": ds.class_names.index(ds.class_of(relative))}

    paths = write_shards(samples(), args.out, args.shard_size)
    print(f"wrote {len(ds.files)} samples into {len(paths)} shards: {paths[0]} ... {paths[-1]}")
    print(f"classes (.cls index -> name): {dict(enumerate(ds.class_names))}")
    return 0

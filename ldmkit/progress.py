"""Progress bars: one home for how ldmkit reports progress (tqdm), quiet when not on a terminal."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, desc: str = "", total: int | None = None,
             disable: bool = False, **kwargs) -> tqdm:
    """A tqdm bar that refreshes often on a terminal and only every 30 s in a log file."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, disable=disable, dynamic_ncols=True,
                mininterval=0.2 if interactive else 30.0, **kwargs)

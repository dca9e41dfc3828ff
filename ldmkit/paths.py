"""Where ldmkit keeps what it can rebuild: rendered datasets, latent caches, feature statistics."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(override: str | Path | None = None, create: bool = True) -> Path:
    """`override`, else $LDMKIT_CACHE, else ~/.cache/ldmkit (created unless create=False)."""
    path = Path(override or os.environ.get("LDMKIT_CACHE") or Path.home() / ".cache" / "ldmkit").expanduser()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path

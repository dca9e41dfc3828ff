"""Per-step reporting shared by the samplers: `callback(dict)` after every step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Callback = Callable[[dict[str, Any]], None]


def report(callback: Callback | None, **info: Any) -> None:
    """Call `callback` with a step's report: {"i": step index, "steps": number of steps, "x": the sample
    after the step, "x0": the clean-sample prediction made in the step, plus "t" (discrete samplers) or
    "sigma"}. Previews and intermediates are collected this way; samplers return only the sample."""
    if callback is not None:
        callback(info)

"""Per-step reporting shared by the samplers: a callback(dict) and, on request, the intermediates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Callback = Callable[[dict[str, Any]], None]


class Progress:
    """Forwards each step's dict to `callback` and keeps its 'x' and 'x0' when `keep` is set.

    Every sampler reports {"i": step index, "steps": number of steps, "x": the sample after the step,
    "x0": the clean-sample prediction made in the step} plus "t" (discrete samplers) or "sigma".
    """

    def __init__(self, callback: Callback | None, keep: bool) -> None:
        self.callback = callback
        self.intermediates: dict[str, list[torch.Tensor]] | None = {"x": [], "x0": []} if keep else None

    def __call__(self, **info: Any) -> None:
        if self.callback is not None:
            self.callback(info)
        if self.intermediates is not None:
            self.intermediates["x"].append(info["x"])
            self.intermediates["x0"].append(info["x0"])

    def result(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
        """x alone, or (x, {"x": [...], "x0": [...]}) when intermediates were asked for."""
        return x if self.intermediates is None else (x, self.intermediates)

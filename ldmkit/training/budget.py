"""A wall-clock budget for training (`train.max_minutes`), carried over resumes.

The seconds spent in the training loop are stored in every checkpoint's training state
(`train_seconds`) and logged to metrics.jsonl, so a resumed run continues the same clock and
runs of different models can be compared at equal training time. The trainer checks the budget
after every optimiser step and stops after the step that crosses it (with a checkpoint).
"""

from __future__ import annotations

import math
from time import perf_counter

import torch


class TimeBudget:
    """Training seconds so far (`spent` before this process, plus the time since construction)."""

    def __init__(self, max_minutes: float | None, spent: float = 0.0):
        self.limit = None if max_minutes is None else 60.0 * max_minutes
        self.spent, self._since = float(spent), perf_counter()

    @property
    def seconds(self) -> float:
        return self.spent + perf_counter() - self._since

    def bar_total(self, steps: int) -> float:
        """The progress bar's step total: `steps`, or unknown (inf: tqdm then counts without a total, where
        None would take the length of a resumed run's remaining range) with a budget, which may end the
        run first."""
        return steps if self.limit is None else math.inf

    def postfix(self) -> dict[str, str]:
        """What the progress bar shows of the budget: {"time": "12.3/30 min"}, or nothing without one."""
        return {} if self.limit is None else {"time": f"{self.seconds / 60:.1f}/{self.limit / 60:g} min"}

    def exhausted(self, ctx=None) -> bool:
        """Whether the budget is used up (never without one); under torchrun, whether any rank says so,
        so that every rank stops after the same step."""
        if self.limit is None:
            return False
        over = self.seconds >= self.limit
        if ctx is not None and ctx.enabled:
            over = bool(ctx.all_reduce_mean(torch.tensor(float(over), device=ctx.device)) > 0)
        return over

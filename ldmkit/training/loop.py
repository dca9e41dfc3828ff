"""The tail both trainers share after each optimiser step: when to log, draw grids and checkpoint,
the images/s between logs, the wall-clock budget (`train.max_minutes`) and the progress bar.

    loop = TrainLoop(tc, start, spent_seconds, "train")
    for step in loop:
        ...                                   # the step itself
        tick = loop.tick(step + 1)
        if tick.log: ...                      # tick.images_per_second since the last log
        if tick.image: ...
        if tick.checkpoint: ...
        if tick.stop: break                   # the time budget is spent (a checkpoint is due too)
    loop.close()
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter

from ldmkit.progress import progress
from ldmkit.training.budget import TimeBudget
from ldmkit.training.config import TrainConfig


@dataclass(frozen=True)
class Tick:
    log: bool
    image: bool
    checkpoint: bool
    stop: bool
    images_per_second: float | None  # since the previous log (when log is due)


class TrainLoop:
    """Steps start .. train.steps (none when a resumed run's budget is spent already), under a progress bar."""

    def __init__(self, tc: TrainConfig, start: int, spent_seconds: float, desc: str, ctx=None, show: bool = True):
        self.tc, self.ctx = tc, ctx
        self.budget = TimeBudget(tc.max_minutes, spent_seconds)
        end = start if self.budget.exhausted(ctx) else tc.steps
        self.bar = progress(range(start, end), desc=desc, total=self.budget.bar_total(tc.steps), initial=start,
                            disable=not show)
        self._logged, self._since = start, perf_counter()

    def __iter__(self):
        return iter(self.bar)

    @property
    def seconds(self) -> float:
        """Training seconds so far, resumed runs included (stored in checkpoints as train_seconds)."""
        return self.budget.seconds

    def tick(self, done: int) -> Tick:
        """What is due after `done` steps."""
        tc = self.tc
        stop = self.budget.exhausted(self.ctx)
        last = done == tc.steps
        log = done % tc.log_every == 0 or last or stop
        rate = None
        if log:
            now = perf_counter()
            rate = (done - self._logged) * tc.batch_size / max(now - self._since, 1e-9)
            self._logged, self._since = done, now
        checkpoint = done % tc.ckpt_every == 0 or done in tc.keep_steps or last or stop
        return Tick(log=log, image=done % tc.image_every == 0 or last, checkpoint=checkpoint, stop=stop,
                    images_per_second=rate)

    def show(self, **values: str) -> None:
        """Values for the progress bar, beside the budget's minutes."""
        self.bar.set_postfix(**values, **self.budget.postfix(), refresh=False)

    def close(self) -> None:
        self.bar.close()

"""The non-finite-loss guard: skip such steps, count them, stop after too many in a row."""

from __future__ import annotations

import math

from ldmkit.errors import LdmkitError


class NonFiniteLossError(LdmkitError):
    """Raised when too many consecutive steps had a NaN or infinite loss."""


class NonFiniteGuard:
    def __init__(self, max_consecutive: int):
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total = 0

    def check(self, loss: float, step: int) -> bool:
        """True if the step may be applied; False (and counted) if the loss is not finite."""
        if math.isfinite(loss):
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.total += 1
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"{self.consecutive} consecutive non-finite losses up to step {step}; the run stopped and "
                "its last good checkpoint is intact. Lower train.lr, use train.precision=fp32, or check the data."
            )
        return False

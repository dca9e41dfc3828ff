"""Which condition a latent diffusion model reads, and the factory that builds its encoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ldmkit.conditioning.base import Conditioner, Unconditional


@dataclass(frozen=True)
class ConditioningConfig:
    kind: Literal["none"] = "none"
    drop_prob: float = 0.1  # share of training samples whose condition is replaced by the null one

    def __post_init__(self):
        if not 0.0 <= self.drop_prob < 1.0:
            raise ValueError(f"conditioning.drop_prob must be in [0, 1), got {self.drop_prob}")


def build_conditioner(cfg: ConditioningConfig) -> Conditioner:
    return Unconditional()

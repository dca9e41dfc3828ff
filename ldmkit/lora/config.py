"""The `lora:` section of a training config: low-rank adapters (Hu et al., 2021) instead of full fine-tuning.

With `rank` > 0 every targeted weight W (out x in, or out x in x k x k) of a model that starts from a
trained one (`--init-from`) is frozen and trains as W + (alpha / rank) * B A, with A (rank x in k k)
and B (out x rank); B starts at zero, so training starts exactly at the base model.
"""

from __future__ import annotations

from dataclasses import dataclass

from ldmkit.errors import ConfigError

# target group -> the layers it names (ldmkit/lora/targets.py finds them in a built model)
TARGET_GROUPS = {
    "attention": "attention projections: to_q, to_k, to_v, to_out.0 (cross-attention); qkv, proj_out (legacy blocks)",
    "proj": "proj_in and proj_out of every spatial transformer",
    "ff": "the transformers' feed-forward layers ff.net.0.proj and ff.net.2",
    "conv": "the ResBlocks' convolutions and time-embedding projections, and the resampling convolutions",
}


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 0  # 0: no adapters, the whole model trains; r > 0: only rank-r adapters train
    alpha: float | None = None  # the adapters' output scale is alpha / rank (null: alpha = rank, scale 1)
    targets: tuple[str, ...] = ("attention",)  # groups of TARGET_GROUPS, or layer names such as attn2.to_k
    text_encoder: bool = False  # also adapt the text encoder's attention projections (any: BERT, MiniLM, CLIP)

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))  # lists from Python callers
        if self.rank < 0:
            raise ConfigError(f"lora.rank must be 0 (no LoRA) or a positive rank, got {self.rank}")
        if self.alpha is not None and self.alpha <= 0:
            raise ConfigError(f"lora.alpha must be positive (or null: alpha = rank), got {self.alpha}")
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ConfigError(f"lora.targets must list layer groups ({', '.join(TARGET_GROUPS)}) or layer names, "
                              f"got {list(self.targets)}")

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    @property
    def scale(self) -> float:
        return (self.alpha if self.alpha is not None else self.rank) / self.rank

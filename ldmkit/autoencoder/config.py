"""The stage-1 autoencoder's config: which regulariser, how deep, how wide.

The layout mirrors CompVis' `ddconfig` so that their checkpoints load by name; the one
difference is `attn_factors`, which lists downsampling factors (1 = full resolution) instead of
spatial sizes, so a config does not depend on the training resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ldmkit.errors import ConfigError

GROUPS = 32  # GroupNorm groups in every autoencoder norm layer


@dataclass(frozen=True)
class AutoencoderConfig:
    kind: Literal["kl", "vq", "identity"] = "kl"  # identity = pixel space (the paper's LDM-1)
    in_channels: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)  # one entry per level; f = 2 ** (len(ch_mult) - 1)
    num_res_blocks: int = 2
    attn_factors: tuple[int, ...] = ()  # self-attention in the levels with these factors (mid block always has it)
    z_channels: int = 4
    embed_dim: int = 4  # latent channels the diffusion model sees
    n_embed: int = 512  # VQ codebook size
    beta: float = 0.25  # VQ commitment weight
    dropout: float = 0.0
    # VQ dead-code restart (training mode only). Every `vq_restart_every` quantiser calls, codes whose
    # EMA share of assignments (decay `vq_usage_decay`) fell below `vq_restart_threshold / n_embed`
    # are re-initialised to encoder outputs of the current batch. 0 turns it off, and then the
    # quantiser has no extra buffers (the layout of CompVis checkpoints, which have none).
    vq_restart_every: int = 100
    vq_restart_threshold: float = 0.1
    vq_usage_decay: float = 0.99

    def __post_init__(self) -> None:
        def fail(key: str, message: str) -> None:
            raise ConfigError(f"autoencoder config key '{key}': {message}")

        object.__setattr__(self, "ch_mult", tuple(self.ch_mult))  # lists from Python callers
        object.__setattr__(self, "attn_factors", tuple(self.attn_factors))
        if self.kind not in ("kl", "vq", "identity"):
            fail("kind", f"must be 'kl', 'vq' or 'identity', got {self.kind!r}")
        for key in ("in_channels", "ch", "num_res_blocks", "z_channels", "embed_dim"):
            if getattr(self, key) < 1:
                fail(key, f"must be >= 1, got {getattr(self, key)}")
        if not self.ch_mult or any(m < 1 for m in self.ch_mult):
            fail("ch_mult", f"must be a non-empty list of positive multipliers, got {list(self.ch_mult)}")
        for i, m in enumerate(self.ch_mult):
            if (self.ch * m) % GROUPS:
                fail("ch_mult", f"level {i} has ch * ch_mult[{i}] = {self.ch * m} channels, not divisible by "
                                f"{GROUPS} (GroupNorm groups); use a 'ch' that is a multiple of {GROUPS}")
        factors = [2**i for i in range(len(self.ch_mult))]
        for a in self.attn_factors:
            if a not in factors:
                fail("attn_factors", f"{a} is not the downsampling factor of a level; with "
                                     f"{len(self.ch_mult)} levels choose from {factors}")
        if self.n_embed < 2:
            fail("n_embed", f"a codebook needs at least 2 codes, got {self.n_embed}")
        if self.beta < 0:
            fail("beta", f"must be >= 0, got {self.beta}")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", f"must be in [0, 1), got {self.dropout}")
        if self.vq_restart_every < 0:
            fail("vq_restart_every", f"must be >= 0 (0 = off), got {self.vq_restart_every}")
        if self.vq_restart_threshold < 0:
            fail("vq_restart_threshold", f"must be >= 0, got {self.vq_restart_threshold}")
        if not 0.0 <= self.vq_usage_decay < 1.0:
            fail("vq_usage_decay", f"must be in [0, 1), got {self.vq_usage_decay}")

    @property
    def downsample_factor(self) -> int:
        return 1 if self.kind == "identity" else 2 ** (len(self.ch_mult) - 1)

    @property
    def latent_channels(self) -> int:
        return self.in_channels if self.kind == "identity" else self.embed_dim

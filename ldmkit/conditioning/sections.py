"""The per-task sections of ConditioningConfig: each one configures one conditioning encoder."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassConfig:
    num_classes: int = 10  # plus one learned "null" class for classifier-free guidance
    embed_dim: int = 512  # width of the context token (= unet.context_dim)


@dataclass(frozen=True)
class TextConfig:
    encoder: str = "bert"  # "bert": trained from scratch (the paper); "minilm": frozen pretrained
    embed_dim: int = 512  # width of the context tokens (= unet.context_dim)
    max_tokens: int = 77


@dataclass(frozen=True)
class LayoutConfig:
    num_classes: int = 10
    embed_dim: int = 512
    max_boxes: int = 8


@dataclass(frozen=True)
class SemanticConfig:
    num_classes: int = 11  # including background

    def concat_channels(self, latent_channels: int) -> int:
        return self.num_classes


@dataclass(frozen=True)
class LowResConfig:
    factor: int = 4  # super-resolution factor
    channels: int = 3

    def concat_channels(self, latent_channels: int) -> int:
        return self.channels


@dataclass(frozen=True)
class InpaintConfig:
    def concat_channels(self, latent_channels: int) -> int:
        return latent_channels + 1  # encoded masked image + the mask

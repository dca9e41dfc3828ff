"""A tiny decoder of a first stage's latents, after TAESD (Bohan, 2023): plain 3x3 convolutions and
ReLUs, about 1 M parameters, a fiftieth of the FLOPs of Stable Diffusion's VAE decoder at 512 px.

It decodes the latents the UNet samples (diffusion space: the first stage's latents times
scale_factor) to images in [-1, 1]. Its layers are those of diffusers' AutoencoderTiny decoder, in
the same order, so TAESD weights load by name (ldmkit/interop/tiny_decoder.py). It approximates the
first stage's decoder: the sampled latent is the same, its rendering differs; the cost in sample
quality is measured in docs/benchmarks.md.

    tiny = TinyDecoder(TinyDecoderConfig(latent_channels=4, blocks=(3, 3, 3, 1)))   # f = 8
    images = tiny(z)                                                               # (B, 3, 8h, 8w)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ldmkit.errors import ConfigError

KIND = "tiny_decoder"  # the ldmkit.kind of its model files


@dataclass(frozen=True)
class TinyDecoderConfig:
    latent_channels: int = 4
    channels: int = 64  # of every level (TAESD: 64)
    blocks: tuple[int, ...] = (3, 3, 3, 1)  # residual blocks per level; f = 2 ** (levels - 1)
    scale_factor: float | None = None  # the diffusion-space scale it was trained for (None: not recorded)

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if self.latent_channels < 1 or self.channels < 1 or not self.blocks or min(self.blocks) < 0:
            raise ConfigError(f"a tiny decoder needs latent_channels, channels >= 1 and blocks >= 0 on at least one "
                              f"level, got {self.latent_channels}, {self.channels}, {list(self.blocks)}")

    @property
    def factor(self) -> int:
        return 2 ** (len(self.blocks) - 1)


def conv(c_in: int, c_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)


class Block(nn.Module):
    """relu(conv(relu(conv(relu(conv(x))))) + x): TAESD's residual block."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Sequential(conv(channels, channels), nn.ReLU(), conv(channels, channels), nn.ReLU(),
                                  conv(channels, channels))
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + x)


class TinyDecoder(nn.Module):
    def __init__(self, config: TinyDecoderConfig):
        super().__init__()
        self.config = config
        c = config.channels
        layers: list[nn.Module] = [conv(config.latent_channels, c), nn.ReLU()]
        for level, count in enumerate(config.blocks):
            last = level == len(config.blocks) - 1
            layers += [Block(c) for _ in range(count)]
            if not last:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            layers.append(conv(c, 3 if last else c, bias=last))
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Diffusion-space latents (B, C, h, w) -> images (B, 3, h f, w f), about [-1, 1], not clamped."""
        z = torch.tanh(z / 3) * 3  # TAESD's soft clamp of the latents to [-3, 3]
        return self.layers(z) * 2 - 1  # the layers output [0, 1]

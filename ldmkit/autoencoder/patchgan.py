"""PatchGAN discriminator (Isola et al. 2017), as used for the first stage's adversarial loss.

4x4 convs, `layers` of them with stride 2, LeakyReLU(0.2), then a stride-1 conv and a 1-channel
conv: the output is a map of real/fake logits, one per overlapping patch. For a 64 px input and
3 layers it is (B, 1, 6, 6).

Normalisation: "group" (default) normalises each sample on its own, so it behaves the same for
batches of 1-8 on a CPU, in train and eval mode, and for the separate real and fake forward
passes; "batch" is pix2pix'/taming's BatchNorm (batch statistics, running buffers).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

DiscNorm = Literal["group", "batch"]


def norm_layer(kind: DiscNorm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(32, channels)


class NLayerDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 3, ch: int = 64, layers: int = 3, norm: DiscNorm = "group"):
        super().__init__()
        widths = [ch * min(2**n, 8) for n in range(layers + 1)]  # ch, 2ch, 4ch, 8ch, 8ch, ...
        seq: list[nn.Module] = [nn.Conv2d(in_channels, ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for n in range(1, layers + 1):
            stride = 2 if n < layers else 1
            seq += [nn.Conv2d(widths[n - 1], widths[n], 4, stride=stride, padding=1, bias=False),
                    norm_layer(norm, widths[n]), nn.LeakyReLU(0.2)]
        seq.append(nn.Conv2d(widths[-1], 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*seq)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)  # (B, C, H, W) -> (B, 1, H / 2**layers - 2, ...) logits


def init_weights(m: nn.Module) -> None:
    """pix2pix: conv weights N(0, 0.02), norm scales N(1, 0.02), norm shifts 0."""
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)

"""The UNet's convolutional parts: GroupNorm32, the time-conditional ResBlock, Down- and Upsample.

Attribute names follow CompVis' `openaimodel.py` (`in_layers.0` is the first norm, `in_layers.2` the
first conv, `emb_layers.1` the embedding projection, `out_layers.0` / `out_layers.3` the second norm
and conv, `skip_connection`, `op`, `conv`), so CompVis state dicts load by name.
Every layer of a UNet block is called as `layer(h, emb, context)` and ignores what it does not use.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ldmkit.unet.config import GROUPS

Resample = Literal["up", "down"] | None


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with float32 statistics, as CompVis' GroupNorm32.

    Input in the weights' dtype goes straight to torch's kernel, which accumulates bfloat16 in
    float32 on CPU and CUDA; it then rounds the affine output to bfloat16 once, as CompVis' cast back
    does, so the bfloat16-weights path needs no float32 copy of the activations. So does reduced-
    precision input with float32 weights (autocast) on CPU, whose kernel takes the mixed dtypes
    (2.7x faster forward + backward than the float32 round trip at 128 channels x 32^2, batch 8);
    elsewhere such input is upcast as CompVis does.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = x.dtype in (torch.bfloat16, torch.float16) and self.weight.dtype == torch.float32
        if x.dtype == self.weight.dtype or (mixed and x.device.type == "cpu"):
            return super().forward(x)
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters: CompVis starts every residual branch's last layer at zero."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def group_norm(channels: int, eps: float = 1e-5) -> GroupNorm32:
    return GroupNorm32(GROUPS, channels, eps=eps)


def resample(x: torch.Tensor, direction: Resample) -> torch.Tensor:
    """Parameter-free 2x resampling: nearest-neighbour up, 2x2 average-pool down."""
    if direction == "up":
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    if direction == "down":
        return F.avg_pool2d(x, kernel_size=2, stride=2)
    return x


class ResBlock(nn.Module):
    """skip(x) + conv(drop(act(norm(conv(act(norm(x))) + emb)))), the embedding added or as scale-shift.

    With `resample`, the resampling sits between act(norm(x)) and the first conv, and the skip path
    is resampled the same way (CompVis' `resblock_updown`).
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = False,
        resample: Resample = None,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.resample = resample
        self.in_layers = nn.Sequential(
            group_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            group_norm(out_channels), nn.SiLU(), nn.Dropout(dropout),
            zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        same = out_channels == channels
        self.skip_connection = nn.Identity() if same else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        norm1, act1, conv1 = self.in_layers
        h = resample(act1(norm1(x)), self.resample)
        x = resample(x, self.resample)
        h = conv1(h)  # (B, C_out, H, W)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]  # (B, C_out or 2 C_out, 1, 1)
        norm2, act2, dropout, conv2 = self.out_layers
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = torch.addcmul(shift, norm2(h), 1 + scale)  # GN(h) * (1 + scale) + shift
        else:
            h = norm2(h + e)
        return self.skip_connection(x) + conv2(dropout(act2(h)))


class InputConv(nn.Conv2d):
    """The UNet's first 3x3 conv, callable like every other block layer."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, context: torch.Tensor | None = None):
        return super().forward(x)


class Downsample(nn.Module):
    """Halve H and W: a stride-2 3x3 conv (`op`), or a 2x2 average pool without `conv_resample`."""

    def __init__(self, channels: int, use_conv: bool = True):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, context: torch.Tensor | None = None):
        return self.op(x)


class Upsample(nn.Module):
    """Double H and W with nearest neighbours, then a 3x3 `conv` unless `conv_resample` is off."""

    def __init__(self, channels: int, use_conv: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, context: torch.Tensor | None = None):
        return self.conv(resample(x, "up"))

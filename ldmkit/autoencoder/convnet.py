"""Encoder E and decoder D of the first stage (Rombach et al. 2022, Sec. 3.1).

E: x (B, C_in, H, W) -> (B, C_out, H/f, W/f) with f = 2 ** (levels - 1); D mirrors it.
Level i works at factor 2**i with ch * ch_mult[i] channels. The module tree is CompVis'
(`encoder.down.{i}.block.{j}`, `decoder.up.{i}.block.{j}`, `*.mid.block_1`, ...), so their
first-stage weights load by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ldmkit.autoencoder.blocks import AttnBlock, Downsample, ResnetBlock, Upsample, group_norm


class Level(nn.Module):
    """Res blocks of one resolution, each followed by attention where the level has it."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, attention: bool, dropout: float):
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(in_channels if j == 0 else out_channels, out_channels, dropout) for j in range(blocks)
        )
        self.attn = nn.ModuleList(AttnBlock(out_channels) for _ in range(blocks if attention else 0))

    def run_blocks(self, h: torch.Tensor) -> torch.Tensor:
        for j, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[j](h)
        return h


class DownLevel(Level):
    """Encoder level: blocks, then `downsample` (none at the deepest level)."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, attention: bool, dropout: float,
                 last: bool):
        super().__init__(in_channels, out_channels, blocks, attention, dropout)
        self.downsample = nn.Identity() if last else Downsample(out_channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.run_blocks(h))


class UpLevel(Level):
    """Decoder level: blocks, then `upsample` (none at full resolution)."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, attention: bool, dropout: float,
                 first: bool):
        super().__init__(in_channels, out_channels, blocks, attention, dropout)
        self.upsample = nn.Identity() if first else Upsample(out_channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.run_blocks(h))


class MidBlock(nn.Module):
    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    def __init__(self, *, in_channels: int, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int,
                 attn_factors: tuple[int, ...], out_channels: int, dropout: float = 0.0):
        super().__init__()
        levels = len(ch_mult)
        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, padding=1)
        widths = [ch] + [ch * m for m in ch_mult]  # input width of level i is widths[i]
        self.down = nn.ModuleList(
            DownLevel(widths[i], widths[i + 1], num_res_blocks, 2**i in attn_factors, dropout, last=i == levels - 1)
            for i in range(levels)
        )
        self.mid = MidBlock(widths[-1], dropout)
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # (B, ch, H, W)
        for level in self.down:
            h = level(h)  # (B, ch * ch_mult[i], H / 2**(i+1), ...), no downsampling at the last level
        h = self.mid(h)  # (B, ch * ch_mult[-1], H/f, W/f)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, out_channels, H/f, W/f)


class Decoder(nn.Module):
    def __init__(self, *, out_channels: int, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int,
                 attn_factors: tuple[int, ...], z_channels: int, dropout: float = 0.0):
        super().__init__()
        levels = len(ch_mult)
        deepest = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, deepest, kernel_size=3, padding=1)
        self.mid = MidBlock(deepest, dropout)
        # up[i] runs at factor 2**i; its input comes from level i + 1 (or the mid block for the deepest)
        inputs = [ch * m for m in ch_mult[1:]] + [deepest]
        self.up = nn.ModuleList(
            UpLevel(inputs[i], ch * ch_mult[i], num_res_blocks + 1, 2**i in attn_factors, dropout, first=i == 0)
            for i in range(levels)
        )
        self.norm_out = group_norm(ch * ch_mult[0])
        self.conv_out = nn.Conv2d(ch * ch_mult[0], out_channels, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))  # (B, ch * ch_mult[-1], h, w)
        for level in reversed(self.up):
            h = level(h)  # (B, ch * ch_mult[i], H / 2**(i-1), ...) after upsampling; level 0 stays at H
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, out_channels, H, W)

"""The time-conditional UNet eps_theta(x_t, t, context, concat, y) of latent diffusion.

Layout (CompVis' `openaimodel.UNetModel`, whose state-dict names it keeps):
- `time_embed`: sinusoidal features of t (width model_channels) -> Linear, SiLU, Linear (4x width);
  `label_emb` (num_classes) adds a learned class vector to it.
- `input_blocks`: a 3x3 conv, then per level `num_res_blocks` x [ResBlock (+ attention)] and,
  except at the last level, a Downsample (or a down-ResBlock with `resblock_updown`).
- `middle_block`: ResBlock, attention, ResBlock (attention always).
- `output_blocks`: per level from the deepest, `num_res_blocks + 1` x [ResBlock on cat(h, skip)
  (+ attention)], the last one of each level but the top ending in an Upsample (or up-ResBlock).
- `out`: GroupNorm, SiLU, 3x3 conv.
Attention is an AttentionBlock, or a SpatialTransformer with `use_spatial_transformer`, at the
downsampling factors listed in `attention_resolutions`. As in CompVis, the last layer of every
residual branch and the output conv start at zero, so a fresh model predicts 0.

Precision: float32 weights compute in float32; under bfloat16 autocast the convs, linears and
attention run in bfloat16 while GroupNorm statistics stay float32; bfloat16 weights compute in
bfloat16 (see `GroupNorm32`). x_t, context and concat are cast to the weights' dtype, and the
prediction is returned in x_t's dtype. For the fastest CPU inference, convert the model with
`.to(torch.bfloat16, memory_format=torch.channels_last)`: every layer then keeps channels_last.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ldmkit.unet.attention import AttentionBlock, SpatialTransformer
from ldmkit.unet.config import UNetConfig
from ldmkit.unet.inputs import check_inputs
from ldmkit.unet.resblock import Downsample, InputConv, ResBlock, Upsample, group_norm, zero_init
from ldmkit.unet.timestep import timestep_embedding


class EmbedSequential(nn.Sequential):
    """One UNet block: its layers run in order, each called as layer(h, emb, context)."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            h = layer(h, emb, context)
        return h


class UNet(nn.Module):
    """`unet(x_t, t, context=None, concat=None, y=None) -> prediction` (B, out_channels, H, W)."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        mc, emb_dim = cfg.model_channels, 4 * cfg.model_channels
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if cfg.num_classes is not None:
            self.label_emb = nn.Embedding(cfg.num_classes, emb_dim)

        def res(ch_in: int, ch_out: int, resample=None) -> ResBlock:
            return ResBlock(ch_in, emb_dim, ch_out, cfg.dropout, cfg.use_scale_shift_norm, resample)

        def attention(ch: int, upsample: bool) -> nn.Module:
            heads, head_dim = cfg.attention_heads(ch, upsample)
            if cfg.use_spatial_transformer:
                return SpatialTransformer(ch, heads, head_dim, cfg.transformer_depth, cfg.context_dim,
                                          cfg.dropout, cfg.use_linear_in_transformer)
            return AttentionBlock(ch, heads)

        self.input_blocks = nn.ModuleList([EmbedSequential(InputConv(cfg.in_channels, mc))])
        skip_channels, ch, factor = [mc], mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers = [res(ch, mult * mc)]
                ch = mult * mc
                if factor in cfg.attention_resolutions:
                    layers.append(attention(ch, upsample=False))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_channels.append(ch)
            if level != cfg.levels - 1:
                down = res(ch, ch, "down") if cfg.resblock_updown else Downsample(ch, cfg.conv_resample)
                self.input_blocks.append(EmbedSequential(down))
                skip_channels.append(ch)
                factor *= 2

        self.middle_block = EmbedSequential(res(ch, ch), attention(ch, upsample=False), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), mult * mc)]
                ch = mult * mc
                if factor in cfg.attention_resolutions:
                    layers.append(attention(ch, upsample=True))
                if level and i == cfg.num_res_blocks:
                    layers.append(res(ch, ch, "up") if cfg.resblock_updown else Upsample(ch, cfg.conv_resample))
                    factor //= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_init(nn.Conv2d(ch, cfg.out_channels, 3, padding=1)))
        # CompVis lets a transformer without context attend to its own tokens; that only works when
        # context_dim equals the width of every transformer.
        widths = {m.inner_dim for m in self.modules() if isinstance(m, SpatialTransformer)}
        self.context_optional = widths == {cfg.context_dim}

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float | int,
        context: torch.Tensor | None = None,
        concat: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, C, H, W) noisy latents; t (B,) DDPM timesteps, integer or fractional, or a scalar;
        context (B, N, context_dim) tokens; concat (B, in_channels - C, H, W) maps; y (B,) labels."""
        h, emb, context = self.inputs(x, t, context, concat, y)
        skips = []
        for block in self.input_blocks:
            h = self._run(block, h, emb, context)
            skips.append(h)
        h = self._run(self.middle_block, h, emb, context)
        for block in self.output_blocks:
            h = self._run(block, torch.cat([h, skips.pop()], dim=1), emb, context)  # (B, C + C_skip, H', W')
        return self.out(h).to(x.dtype)  # (B, out_channels, H, W)

    def inputs(self, x: torch.Tensor, t: torch.Tensor | float | int, context: torch.Tensor | None,
               concat: torch.Tensor | None, y: torch.Tensor | None):
        """The checked inputs of the blocks: h (B, in_channels, H, W), emb (B, 4 mc) and context, in the
        weights' dtype."""
        t = check_inputs(self.config, x, t, context, concat, y, self.context_optional)
        dtype = self.out[2].weight.dtype
        h = x if concat is None else torch.cat([x, concat], dim=1)  # (B, in_channels, H, W)
        context = None if context is None else context.to(dtype)
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels).to(dtype))  # (B, 4 mc)
        if y is not None:
            emb = emb + self.label_emb(y)
        return h.to(dtype), emb, context

    def _run(self, block: EmbedSequential, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None):
        if self.config.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(block, h, emb, context, use_reentrant=False)
        return block(h, emb, context)

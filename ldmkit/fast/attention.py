"""Faster exact attention for the UNet's attention layers, swapped into a built model.

Two shortcuts, both exact up to rounding:
- One context token (a class label, as in the paper's class-conditional models): the softmax over
  one key is 1 for every query, so each head's output is that token's value and the layer returns
  to_out(to_v(context)) broadcast over the positions: no query projection, no attention, and the
  output projection on one token (3 % of the 42.5 M UNet's FLOPs). Only without gradients: with
  them the full path runs, so that to_q keeps its (zero) gradient for AdamW's weight decay and DDP.
- Reduced-precision attention on CPU over at most SMALL_ATTENTION (query, key) pairs per head runs as
  two matrix products with a float32 softmax: torch's flash kernel is 3-6x slower there, forward and
  backward in bfloat16 at batch 8 (64 or 16 tokens, the UNet's coarse levels); above it, the kernel is
  as fast and needs less memory, and float32 keeps it throughout.
`use_fast_attention(module)` swaps the class of every CrossAttention / AttentionBlock inside `module`
(the parameters, and so the state dict, are untouched).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ldmkit.unet.attention import AttentionBlock, CrossAttention

SMALL_ATTENTION = 64 * 64


def small_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v as `ldmkit.unet.attention.attention`, faster for small bf16/fp16 CPU inputs."""
    small = q.shape[-2] * k.shape[-2] <= SMALL_ATTENTION
    if small and q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
        weights = torch.softmax((q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5, dim=-1)  # (B, heads, N, M)
        return weights.to(v.dtype) @ v
    return F.scaled_dot_product_attention(q, k, v)


class FastCrossAttention(CrossAttention):
    attend = staticmethod(small_attention)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is not None and context.shape[1] == 1 and not torch.is_grad_enabled():
            return self.to_out(self.to_v(context)).expand(-1, x.shape[1], -1)  # (B, 1, dim) -> (B, N, dim)
        return super().forward(x, context)


class FastAttentionBlock(AttentionBlock):
    attend = staticmethod(small_attention)


FAST = {CrossAttention: FastCrossAttention, AttentionBlock: FastAttentionBlock}


def use_fast_attention(module: nn.Module) -> nn.Module:
    """Swap, in place, the class of every plain CrossAttention and AttentionBlock inside `module`."""
    for m in module.modules():
        if type(m) in FAST:
            m.__class__ = FAST[type(m)]
    return module

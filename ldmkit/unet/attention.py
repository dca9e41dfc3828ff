"""The UNet's attention layers: CompVis' legacy AttentionBlock and the cross-attending SpatialTransformer.

Both run attention through `F.scaled_dot_product_attention` on (B, heads, N, d) views and work on
tokens (B, HW, C): with channels_last activations the (B, C, H, W) <-> (B, HW, C) reshapes are free.
Attribute names follow CompVis (`norm`, `qkv`, `proj_in`, `transformer_blocks.{i}.attn1.to_q`,
`ff.net.0.proj`, `ff.net.2`, `norm1..3`, `proj_out`), so CompVis state dicts load by name; 1x1
convolutions keep their (C_out, C_in, 1, 1) weights and run as the equivalent matrix product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ldmkit.unet.resblock import group_norm, zero_init


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for (B, heads, N, d) queries and (B, heads, M, d) keys and values."""
    return F.scaled_dot_product_attention(q, k, v)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, HW, C); a view when x is channels_last."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


def from_tokens(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, HW, C) -> (B, C, H, W) as a channels_last view."""
    b, _, c = tokens.shape
    return tokens.reshape(b, height, width, c).permute(0, 3, 1, 2)


def pointwise(layer: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """A 1x1 Conv1d/Conv2d or a Linear applied to (B, N, C_in) tokens -> (B, N, C_out)."""
    return F.linear(tokens, layer.weight.flatten(1), layer.bias)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, heads * d) -> (B, heads, N, d), heads split as (h d) on the last axis."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class AttentionBlock(nn.Module):
    """x + proj_out(attention(qkv(norm(x)))) over all positions, CompVis' legacy QKV layout.

    `qkv` is a 1x1 Conv1d C -> 3C whose output channels are grouped per head, [q, k, v] of head 0,
    then head 1, ...; q.k is scaled by d^-1/2 (CompVis scales q and k by d^-1/4 each).
    """

    attend = staticmethod(attention)  # (ldmkit/fast/attention.py swaps in faster exact kernels)

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_init(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, context: torch.Tensor | None = None):
        b, c, h, w = x.shape
        qkv = pointwise(self.qkv, to_tokens(self.norm(x)))  # (B, HW, 3C), per head [q | k | v]
        qkv = qkv.view(b, h * w, self.heads, 3, c // self.heads).permute(3, 0, 2, 1, 4)  # (3, B, heads, HW, d)
        out = self.attend(qkv[0], qkv[1], qkv[2])  # (B, heads, HW, d)
        out = pointwise(self.proj_out, merge_heads(out))  # (B, HW, C)
        return x + from_tokens(out, h, w)


class CrossAttention(nn.Module):
    """Multi-head attention from x (B, N, dim) to context (B, M, context_dim), or to x itself."""

    attend = staticmethod(attention)  # (ldmkit/fast/attention.py swaps in faster exact kernels)

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        q = split_heads(self.to_q(x), self.heads)  # (B, heads, N, d)
        k = split_heads(self.to_k(context), self.heads)  # (B, heads, M, d)
        v = split_heads(self.to_v(context), self.heads)
        out = self.attend(q, k, v)  # (B, heads, N, d), scale d^-1/2
        return self.to_out(merge_heads(out))  # (B, N, query_dim)


class GEGLU(nn.Module):
    """value * gelu(gate) with (value, gate) = proj(x) split in half; exact (erf) GELU."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, 2 * dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, mult * dim), nn.Dropout(dropout), nn.Linear(mult * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """x += attn1(LN1(x)); x += attn2(LN2(x), context); x += FF(LN3(x)) on tokens (B, N, dim)."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None, dropout: float = 0.0):
        super().__init__()
        self.attn1 = CrossAttention(dim, heads, head_dim, dropout=dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = CrossAttention(dim, heads, head_dim, context_dim=context_dim, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """x + proj_out(blocks(proj_in(norm(x)) as tokens, context)), CompVis' conditioning transformer.

    Without context, `attn2` attends to the tokens themselves (CompVis' behaviour), which needs a
    context_dim equal to the inner width; the UNet checks that before calling.
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        head_dim: int,
        depth: int,
        context_dim: int | None,
        dropout: float = 0.0,
        use_linear: bool = False,
    ):
        super().__init__()
        inner = heads * head_dim
        self.inner_dim = inner
        self.context_dim = context_dim
        self.norm = group_norm(channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if use_linear else nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, head_dim, context_dim, dropout) for _ in range(depth)]
        )
        self.proj_out = zero_init(nn.Linear(inner, channels) if use_linear else nn.Conv2d(inner, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, context: torch.Tensor | None = None):
        _, _, h, w = x.shape
        tokens = pointwise(self.proj_in, to_tokens(self.norm(x)))  # (B, HW, inner)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        return x + from_tokens(pointwise(self.proj_out, tokens), h, w)  # (B, C, H, W)

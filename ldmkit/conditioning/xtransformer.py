"""The text transformer of CompVis' BERTEmbedder (x-transformers' TransformerWrapper + Encoder).

    h = token_emb(ids) + pos_emb(positions)                          (B, N, dim)
    for each of `depth` pairs:  h += Attn(LN(h));  h += FF(LN(h))     (pre-LayerNorm, residual)
    out = LN(h)                                                       (B, N, dim)
Attention always has 8 heads of 64 dims whatever `dim` is (to_q is (512, dim)), scale 64^-1/2,
and no padding mask: every position attends to all N, padding included, as in CompVis. The
feed-forward is Linear(dim, 4 dim), exact GELU, Linear(4 dim, dim). Module names follow
x-transformers (`token_emb`, `pos_emb.emb`, `attn_layers.layers.{j}.0` the norm and `.1` the
block, `norm`), so `cond_stage_model.transformer.*` loads by name; `to_logits` is not kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEADS, HEAD_DIM = 8, 64


class Attention(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        inner = HEADS * HEAD_DIM
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, HEADS, HEAD_DIM).transpose(1, 2)  # (B, heads, N, 64)

        out = F.scaled_dot_product_attention(heads(self.to_q(x)), heads(self.to_k(x)), heads(self.to_v(x)))
        return self.to_out(out.transpose(1, 2).reshape(b, n, HEADS * HEAD_DIM))  # (B, N, dim)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Sequential(nn.Linear(dim, mult * dim), nn.GELU()), nn.Dropout(0.0),
                                 nn.Linear(mult * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PositionEmbedding(nn.Module):
    def __init__(self, dim: int, max_tokens: int):
        super().__init__()
        self.emb = nn.Embedding(max_tokens, dim)

    def forward(self, n: int, device: torch.device) -> torch.Tensor:
        return self.emb(torch.arange(n, device=device))[None]  # (1, N, dim)


class AttentionLayers(nn.Module):
    """`depth` x [attention, feed-forward], each as ModuleList([LayerNorm, block]) (x-transformers' layout)."""

    def __init__(self, dim: int, depth: int):
        super().__init__()
        blocks = [Attention(dim) if j % 2 == 0 else FeedForward(dim) for j in range(2 * depth)]
        self.layers = nn.ModuleList(nn.ModuleList([nn.LayerNorm(dim), block]) for block in blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for norm, block in self.layers:
            x = x + block(norm(x))
        return x


class XTransformerEncoder(nn.Module):
    """ids (B, N) int64 -> (B, N, dim) embeddings; N <= max_tokens."""

    def __init__(self, vocab_size: int, dim: int, depth: int, max_tokens: int):
        super().__init__()
        self.token_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb = PositionEmbedding(dim, max_tokens)
        self.attn_layers = AttentionLayers(dim, depth)
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.token_emb.weight, std=0.02)  # as x-transformers initialises both tables
        nn.init.normal_(self.pos_emb.emb.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.token_emb(ids) + self.pos_emb(ids.shape[1], ids.device)  # (B, N, dim)
        return self.norm(self.attn_layers(x))

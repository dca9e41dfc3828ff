"""Sinusoidal timestep features, exactly as CompVis' `timestep_embedding` computes them."""

from __future__ import annotations

import math

import torch


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) integer or fractional timesteps -> (B, dim) float32 features [cos(t f_i), sin(t f_i)].

    f_i = exp(-ln(max_period) * i / half) for i < half = dim // 2: cos first, divisor half (not
    half - 1), computed in float32; an odd dim gets a zero last column.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2 half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb

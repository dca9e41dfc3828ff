"""Vector quantiser of the VQ-regularised first stage (van den Oord et al. 2017; Rombach et al. 2022).

Each latent vector is replaced by its nearest codebook entry; gradients pass straight through.
Loss: ||sg[z] - e||^2 + beta ||z - sg[e]||^2 (codebook + commitment), means over all elements.

Dead-code restart (training mode, `restart_every > 0`): the quantiser keeps an EMA of each code's
share of assignments in the buffer `usage` and counts its training calls in `calls`. On every
`restart_every`-th call, codes with usage < `restart_threshold / n_embed` are set to encoder
outputs of the current batch, picked by a random permutation from a generator seeded with the
call count. Both buffers are in the state dict, so a resumed run repeats the same restarts bit
for bit. With `restart_every == 0` neither buffer exists (CompVis' layout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RESTART_SEED = 0x5EED_C0DE  # offset of the per-call restart seeds, so they differ from small seeds used elsewhere


def flatten_positions(h: torch.Tensor) -> torch.Tensor:
    return h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])  # (B, D, h, w) -> (B*h*w, D)


class VectorQuantizer(nn.Module):
    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, restart_every: int = 0,
                 restart_threshold: float = 0.1, usage_decay: float = 0.99):
        super().__init__()
        self.n_embed, self.embed_dim, self.beta = n_embed, embed_dim, beta
        self.restart_every, self.restart_threshold, self.usage_decay = restart_every, restart_threshold, usage_decay
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)
        if restart_every > 0:
            self.register_buffer("usage", torch.full((n_embed,), 1.0 / n_embed))
            self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def nearest(self, h: torch.Tensor) -> torch.Tensor:
        """Index of the closest code per position, argmin |z|^2 + |e|^2 - 2 z.e: (B, D, h, w) -> (B, h, w)."""
        with torch.autocast(device_type=h.device.type, enabled=False):
            z = flatten_positions(h.float())
            e = self.embedding.weight.float()
            d = z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2.0 * z @ e.t()  # (B*h*w, n_embed)
            return d.argmin(dim=1).view(h.shape[0], h.shape[2], h.shape[3])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return self.embedding(indices).permute(0, 3, 1, 2)  # (B, h, w) -> (B, D, h, w)

    def quantize(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_q, codebook + commitment loss, indices); z_q equals the codes, its gradient goes to h."""
        with torch.autocast(device_type=h.device.type, enabled=False):
            h = h.float()
            indices = self.nearest(h)
            e = self.lookup(indices)  # (B, D, h, w)
            loss = F.mse_loss(e, h.detach()) + self.beta * F.mse_loss(h, e.detach())
            z_q = h + (e - h).detach()  # straight-through estimator
        return z_q, loss, indices

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`quantize`, plus usage tracking and dead-code restarts in training mode."""
        bookkeeping = self.training and self.restart_every > 0
        if bookkeeping:
            self.calls += 1
            if int(self.calls) % self.restart_every == 0:
                self.restart_dead_codes(h)
        z_q, loss, indices = self.quantize(h)
        if bookkeeping:
            self.track_usage(indices)
        return z_q, loss, indices

    @torch.no_grad()
    def track_usage(self, indices: torch.Tensor) -> None:
        share = torch.bincount(indices.flatten(), minlength=self.n_embed).float() / indices.numel()
        self.usage.mul_(self.usage_decay).add_(share, alpha=1.0 - self.usage_decay)

    @torch.no_grad()
    def restart_dead_codes(self, h: torch.Tensor) -> int:
        """Move codes used less than `restart_threshold / n_embed` onto encoder outputs; return how many."""
        dead = torch.nonzero(self.usage < self.restart_threshold / self.n_embed).flatten()
        if dead.numel() == 0:
            return 0
        z = flatten_positions(h.detach().float())  # (N, D)
        generator = torch.Generator(device=z.device).manual_seed(RESTART_SEED + int(self.calls))
        order = torch.randperm(z.shape[0], generator=generator, device=z.device)
        picks = order[torch.arange(dead.numel(), device=z.device) % z.shape[0]]  # distinct while dead <= N
        self.embedding.weight[dead] = z[picks].to(self.embedding.weight.dtype)
        self.usage[dead] = 1.0 / self.n_embed  # a fresh code gets the uniform share as grace period
        return int(dead.numel())


def codebook_stats(indices: torch.Tensor, n_embed: int) -> dict[str, torch.Tensor]:
    """Perplexity of the batch's code histogram and the fraction of the codebook it uses."""
    counts = torch.bincount(indices.flatten(), minlength=n_embed).float()
    p = counts / counts.sum()
    perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())
    return {"perplexity": perplexity, "codes_used": (counts > 0).float().mean()}

"""The KL-regularised first stage's posterior q(z|x) = N(mean, diag(exp(logvar)))."""

from __future__ import annotations

import torch


class DiagonalGaussian:
    """A diagonal Gaussian from `moments` (B, 2C, h, w) = [mean | logvar] along channels.

    logvar is clamped to [-30, 20] as in the paper's code; all maths runs in float32.
    """

    def __init__(self, moments: torch.Tensor):
        if moments.ndim != 4 or moments.shape[1] % 2:
            raise ValueError(f"moments must be (B, 2C, h, w), got {tuple(moments.shape)}")
        self.mean, logvar = moments.float().chunk(2, dim=1)  # (B, C, h, w) each
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * eps, eps ~ N(0, I) drawn from `generator` (torch's global RNG when None)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample, summed over latent dims: (B,)."""
        return 0.5 * (self.mean.pow(2) + self.var - 1.0 - self.logvar).sum(dim=(1, 2, 3))

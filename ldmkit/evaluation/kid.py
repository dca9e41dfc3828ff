"""Kernel Inception Distance (Binkowski et al., 2018): an unbiased MMD^2 with a cubic polynomial kernel.

    k(x, y) = (x . y / D + 1)^3
    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
              - 2 sum_{i, j} k(x_i, y_j) / m^2

averaged over `subsets` random subsets of `subset_size` samples from each set (drawn without
replacement), as the reference implementations do (100 subsets of 1000; here at most min(n) when a
set is smaller). Reported as the mean and standard deviation over subsets. Unlike the Fréchet
distance it is unbiased: two samples of one distribution give ~0 (and may give small negative values).
"""

from __future__ import annotations

import torch

from ldmkit.errors import ShapeError

SUBSETS, SUBSET_SIZE = 100, 1000


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(m, D), (n, D) -> (m, n) kernel matrix (x . y / D + 1)^3."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """The unbiased MMD^2 estimate between two equal-size sets (m, D) under the cubic kernel."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kernel_distance(x: torch.Tensor, y: torch.Tensor, subsets: int = SUBSETS, subset_size: int = SUBSET_SIZE,
                    generator: torch.Generator | None = None) -> tuple[float, float]:
    """(mean, std) of MMD^2_u over random subsets of (N_x, D) and (N_y, D) features, in float64."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ShapeError(f"KID needs two (N, D) feature sets of one D, got {tuple(x.shape)} and {tuple(y.shape)}")
    size = min(subset_size, x.shape[0], y.shape[0])
    if size < 2:
        raise ShapeError(f"KID needs at least 2 samples in each set, got {x.shape[0]} and {y.shape[0]}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    x, y = x.detach().to("cpu", torch.float64), y.detach().to("cpu", torch.float64)
    values = torch.tensor([
        mmd2_unbiased(x[torch.randperm(x.shape[0], generator=generator)[:size]],
                      y[torch.randperm(y.shape[0], generator=generator)[:size]])
        for _ in range(subsets)
    ], dtype=torch.float64)
    return float(values.mean()), float(values.std(unbiased=False))  # population std, as numpy's default

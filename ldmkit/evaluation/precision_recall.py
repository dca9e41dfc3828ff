"""Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019) from k-nearest-neighbour balls.

Each set's manifold is the union of balls around its points, each ball's radius the distance to
that point's k-th nearest neighbour in its own set (k = 3, the paper's choice; the point itself is
not counted). Then
    precision = share of generated samples inside the real manifold   (are samples realistic?)
    recall    = share of real samples inside the generated manifold   (is the data covered?)
A point lies inside when its distance to some centre is <= that centre's radius (as the reference
code). Distances are Euclidean, computed in float64 blocks of `batch_size` rows so memory stays at
batch_size x N values.
"""

from __future__ import annotations

import torch

from ldmkit.errors import ShapeError

NEIGHBOURS = 3


def knn_radii(points: torch.Tensor, k: int = NEIGHBOURS, batch_size: int = 1024) -> torch.Tensor:
    """(N,) distance from each point to its k-th nearest other point of the same set."""
    if points.shape[0] <= k:
        raise ShapeError(f"precision/recall with k={k} needs more than {k} samples per set, got {points.shape[0]}")
    radii = [torch.cdist(block, points).kthvalue(k + 1, dim=1).values  # the 1st is the point itself (0)
             for block in points.split(batch_size)]
    return torch.cat(radii)


def coverage(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, batch_size: int = 1024) -> float:
    """Share of `queries` (M, D) inside at least one ball (centres (N, D), radii (N,))."""
    inside = [(torch.cdist(block, centres) <= radii).any(dim=1) for block in queries.split(batch_size)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = NEIGHBOURS,
                     batch_size: int = 1024) -> tuple[float, float]:
    """(precision, recall) of generated features `fake` (M, D) against `real` (N, D)."""
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ShapeError(f"precision/recall needs two (N, D) feature sets of one D, got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}")
    real, fake = real.detach().to(torch.float64), fake.detach().to(real.device, torch.float64)
    precision = coverage(fake, real, knn_radii(real, k, batch_size), batch_size)
    recall = coverage(real, fake, knn_radii(fake, k, batch_size), batch_size)
    return precision, recall

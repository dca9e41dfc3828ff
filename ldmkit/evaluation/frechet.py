"""The Fréchet distance between two Gaussians fitted to features (Heusel et al., 2017: FID).

    d^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2))

All in float64. pytorch-fid computes the last term with scipy.linalg.sqrtm of the non-symmetric
product S_1 S_2; here it is computed without scipy from symmetric eigendecompositions:
S_1 S_2 is similar to the symmetric PSD matrix A = S_1^(1/2) S_2 S_1^(1/2), so
tr((S_1 S_2)^(1/2)) = tr(A^(1/2)) = sum_i sqrt(lambda_i(A)), with tiny negative eigenvalues
(rounding, or rank-deficient covariances when there are fewer samples than dimensions) clipped
to 0. Unlike sqrtm this never returns complex values, so there is no imaginary part to drop.
"""

from __future__ import annotations

import numpy as np
import torch

from ldmkit.errors import ShapeError


def gaussian_moments(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> mean (D,) and unbiased covariance (D, D), float64 (as numpy.cov)."""
    f = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ShapeError(f"Gaussian statistics need (N, D) features with N >= 2, got {tuple(f.shape)}")
    mu = f.mean(0)
    centred = f - mu
    sigma = centred.T @ centred / (f.shape[0] - 1)  # (D, D)
    return mu.numpy(), sigma.numpy()


def _psd_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric PSD matrix (negative rounding noise clipped)."""
    values, vectors = torch.linalg.eigh((sigma + sigma.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S_1 S_2)^(1/2)) for symmetric PSD S_1, S_2, via the eigenvalues of S_1^(1/2) S_2 S_1^(1/2)."""
    s1 = torch.as_tensor(np.asarray(sigma1), dtype=torch.float64)
    s2 = torch.as_tensor(np.asarray(sigma2), dtype=torch.float64)
    root = _psd_sqrt(s1)
    inner = root @ s2 @ root  # (D, D), symmetric PSD up to rounding
    return float(torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (what "FID" reports)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ShapeError(f"Fréchet distance needs means (D,) and covariances (D, D) of one D, got {mu1.shape}, "
                         f"{sigma1.shape} and {mu2.shape}, {sigma2.shape} (were the statistics computed with "
                         "different feature networks?)")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))  # exact 0 can come out as -1e-12

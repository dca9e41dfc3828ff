import math

import numpy as np
import pytest

from ldmkit.errors import ShapeError
from ldmkit.evaluation.frechet import frechet_distance, gaussian_moments, trace_sqrt_product


def rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def test_diagonal_covariances_match_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # 7.25 + 4 + 1 + 0
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_a_common_rotation_of_both_covariances_keeps_the_closed_form():
    d = 6
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    r = rotation(d, 2)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    value = frechet_distance(r @ mu1, r @ np.diag(a) @ r.T, r @ mu2, r @ np.diag(b) @ r.T)
    assert value == pytest.approx(expected, rel=1e-10)


def test_non_commuting_2x2_covariances_match_the_2x2_square_root_trace():
    # For a 2x2 matrix M with positive eigenvalues, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
    s1 = np.diag([1.0, 4.0])
    c, s = math.cos(0.5), math.sin(0.5)
    r = np.array([[c, -s], [s, c]])
    s2 = r @ np.diag([2.0, 0.5]) @ r.T
    m = s1 @ s2
    tr_sqrt = math.sqrt(np.trace(m) + 2 * math.sqrt(np.linalg.det(m)))
    assert trace_sqrt_product(s1, s2) == pytest.approx(tr_sqrt, rel=1e-12)
    assert frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(
        np.trace(s1) + np.trace(s2) - 2 * tr_sqrt, rel=1e-12)


def test_trace_term_matches_the_eigenvalues_of_the_non_symmetric_product_in_high_dimension():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(400, 64)), rng.normal(size=(400, 64)) @ rng.normal(size=(64, 64))
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    direct = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
    assert trace_sqrt_product(s1, s2) == pytest.approx(direct, rel=1e-9)


def test_moments_are_numpy_mean_and_unbiased_covariance_and_identical_sets_give_zero():
    f = np.random.default_rng(4).normal(size=(50, 80)).astype(np.float32)  # fewer samples than dimensions
    mu, sigma = gaussian_moments(f)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, f.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(f.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-14)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_statistics_of_different_dimensions_are_refused():
    with pytest.raises(ShapeError, match="different feature networks"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ShapeError, match="N >= 2"):
        gaussian_moments(np.zeros((1, 3)))

import pytest
import torch

from ldmkit.errors import ShapeError
from ldmkit.evaluation.kid import kernel_distance, mmd2_unbiased


def test_point_masses_give_the_kernel_closed_form():
    # All x at 0 and all y at 1 in 1-D: k(0,0) = 1, k(1,1) = 8, k(0,1) = 1, so MMD^2 = 1 + 8 - 2 = 7.
    x, y = torch.zeros(20, 1, dtype=torch.float64), torch.ones(20, 1, dtype=torch.float64)
    assert mmd2_unbiased(x, y) == pytest.approx(7.0, rel=1e-12)
    mean, std = kernel_distance(x, y, subsets=5, subset_size=10)
    assert mean == pytest.approx(7.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_unbiased_estimate_matches_a_direct_double_sum():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 7
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    assert mmd2_unbiased(x, y) == pytest.approx(float(xx + yy - 2 * xy), rel=1e-10)


def test_two_samples_of_one_distribution_give_about_zero_and_a_shift_does_not():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(1500, 16, generator=g), torch.randn(1500, 16, generator=g)
    same, same_std = kernel_distance(x, y, subsets=20, subset_size=300)
    shifted, _ = kernel_distance(x, y + 0.5, subsets=20, subset_size=300)
    assert abs(same) < 3 * same_std  # unbiased: 0 within its spread
    identical, identical_std = kernel_distance(x, x.clone(), subsets=20, subset_size=300)
    assert abs(identical) < 3 * identical_std  # independent subsets of one set
    assert shifted > 20 * max(abs(same), abs(identical)) and shifted > 10 * same_std


def test_subsets_shrink_to_the_smaller_set_and_draws_follow_the_generator():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(40, 4, generator=g), torch.randn(25, 4, generator=g)
    a = kernel_distance(x, y, subsets=4, generator=torch.Generator().manual_seed(5))  # subsets of 25, not 1000
    b = kernel_distance(x, y, subsets=4, generator=torch.Generator().manual_seed(5))
    assert a == b
    with pytest.raises(ShapeError, match="one D"):
        kernel_distance(x, torch.randn(25, 5))

import pytest
import torch

from ldmkit.errors import ShapeError
from ldmkit.evaluation.precision_recall import knn_radii, precision_recall


def cluster(centre: float, n: int, seed: int, d: int = 8) -> torch.Tensor:
    return centre + torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_identical_sets_have_precision_and_recall_one():
    x = cluster(0.0, 50, 0)
    assert precision_recall(x, x.clone()) == (1.0, 1.0)


def test_far_apart_sets_have_precision_and_recall_zero():
    assert precision_recall(cluster(0.0, 40, 1), cluster(100.0, 30, 2)) == (0.0, 0.0)


def test_samples_covering_one_of_two_modes_have_full_precision_and_partial_recall():
    # Real data: 30 points in mode A, 10 in a far mode B. Samples: exactly the mode-A points.
    real = torch.cat([cluster(0.0, 30, 3), cluster(100.0, 10, 4)])
    fake = real[:30].flip(0)
    precision, recall = precision_recall(real, fake)
    assert precision == 1.0  # every sample is a real point: inside its own ball
    assert recall == pytest.approx(30 / 40)  # mode B's real points are far from every sample's ball


def test_radii_are_kth_neighbour_distances_and_blocks_do_not_change_the_result():
    points = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])
    # neighbours of 0: 1, 3, 6 -> 3rd is 6; of 1: 1, 2, 5 -> 5; of 3: 2, 3, 3 -> 3; of 6: 3, 4, 5 -> 5; of 10: 4, 7, 9
    assert knn_radii(points, k=3).tolist() == [6.0, 5.0, 3.0, 5.0, 9.0]
    real, fake = cluster(0.0, 37, 6), cluster(0.7, 29, 7)
    assert precision_recall(real, fake, batch_size=5) == precision_recall(real, fake, batch_size=1000)
    p, r = precision_recall(real, fake)
    assert precision_recall(fake, real) == (r, p)  # the two are each other's mirror image


def test_too_few_samples_or_mismatched_dimensions_are_refused():
    with pytest.raises(ShapeError, match="more than 3 samples"):
        precision_recall(cluster(0.0, 3, 8), cluster(0.0, 10, 9))
    with pytest.raises(ShapeError, match="one D"):
        precision_recall(cluster(0.0, 10, 8), cluster(0.0, 10, 9, d=4))

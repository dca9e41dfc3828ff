import math

import pytest
import torch

from ldmkit.errors import ShapeError
from ldmkit.evaluation.inception_score import inception_score


def test_one_distribution_for_every_sample_scores_one():
    logits = torch.randn(1, 7).expand(50, 7)
    mean, std = inception_score(logits)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_certain_and_balanced_classes_score_the_number_of_classes():
    k = 8
    labels = torch.arange(10 * k) % k  # every split of 8 holds each class once
    logits = 200.0 * torch.nn.functional.one_hot(labels, k).double()
    mean, std = inception_score(logits)
    assert mean == pytest.approx(k, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_two_soft_classes_match_the_closed_form():
    # Half the samples p(y|x) = (q, 1-q), half (1-q, q): p(y) is uniform, so
    # IS = exp(log 2 - H(q)) = 2 exp(-H(q)), with H the binary entropy.
    q = 0.8
    row = torch.tensor([math.log(q), math.log(1 - q)], dtype=torch.float64)
    logits = torch.stack([row, row.flip(0)] * 20)  # (40, 2), alternating: each split balanced
    entropy = -(q * math.log(q) + (1 - q) * math.log(1 - q))
    mean, _ = inception_score(logits, splits=4)
    assert mean == pytest.approx(2 * math.exp(-entropy), rel=1e-12)


def test_fewer_samples_than_splits_are_refused():
    with pytest.raises(ShapeError, match="N >= splits"):
        inception_score(torch.randn(9, 4))

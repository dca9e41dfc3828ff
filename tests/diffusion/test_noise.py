import pytest
import torch

from ldmkit.diffusion.noise import (
    randint_from,
    randn_from,
    randn_like_per_sample,
    seeded_generators,
)
from ldmkit.errors import LdmkitError


def test_rows_come_from_their_own_generator():
    batch = randn_like_per_sample((3, 2, 5), seeded_generators([4, 5, 6]), "cpu", torch.float32)
    assert batch.shape == (3, 2, 5)
    for row, seed in zip(batch, [4, 5, 6]):
        expected = torch.randn((1, 2, 5), generator=torch.Generator().manual_seed(seed))[0]
        assert torch.equal(row, expected)


def test_dtype_and_wrong_counts():
    assert randn_like_per_sample((2, 3), seeded_generators([0, 1]), "cpu", torch.float64).dtype == torch.float64
    with pytest.raises(LdmkitError, match="one per sample"):
        randn_like_per_sample((3, 2), seeded_generators([0, 1]), "cpu", torch.float32)
    with pytest.raises(LdmkitError, match="per-sample"):
        randn_like_per_sample((1, 2), torch.Generator(), "cpu", torch.float32)


def test_single_generator_or_list():
    one = randn_from((4, 2), torch.Generator().manual_seed(0), "cpu", torch.float32)
    assert one.shape == (4, 2)
    per_sample = randn_from((2, 2), seeded_generators([3, 4]), "cpu", torch.float32)
    assert torch.equal(per_sample, randn_like_per_sample((2, 2), seeded_generators([3, 4]), "cpu", torch.float32))
    t = randint_from(10, 5, seeded_generators(range(5)), "cpu")
    assert t.shape == (5,) and t.dtype == torch.int64 and bool(((t >= 0) & (t < 10)).all())

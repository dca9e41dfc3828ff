import pytest
import torch

from ldmkit.data.masks import MaskConfig, large_mask, large_masks
from ldmkit.errors import ConfigError


def gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_masks_are_binary_holes_of_the_requested_size():
    masks = large_masks(48, 64, gens(range(8)))
    assert masks.shape == (8, 1, 48, 64) and masks.dtype == torch.float32
    assert set(masks.unique().tolist()) <= {0.0, 1.0}


def test_a_mask_is_a_function_of_its_seed_alone():
    a = large_masks(64, 64, gens([3, 4, 5]))
    b = large_masks(64, 64, gens([4]))
    assert torch.equal(a[1], b[0]) and torch.equal(a, large_masks(64, 64, gens([3, 4, 5])))
    assert not torch.equal(a[0], a[1])


def test_coverage_is_substantial_and_within_the_configured_range():
    cfg = MaskConfig()
    coverage = large_masks(64, 64, gens(range(200))).mean(dim=(1, 2, 3))  # (200,)
    assert 0.2 < coverage.mean() < 0.45  # LaMa's large masks: a substantial share of the image
    assert coverage.std() > 0.08  # small and large holes alike
    inside = ((coverage >= cfg.min_coverage) & (coverage <= cfg.max_coverage)).float().mean()
    assert inside > 0.97  # the rest ran out of redraws
    assert (coverage > 0).all() and (coverage < 1).all()


def corners(mask: torch.Tensor) -> int:
    """2x2 windows holding 1 or 3 hole pixels: the corners of a rasterised outline."""
    m = mask[0]
    count = m[1:, 1:] + m[1:, :-1] + m[:-1, 1:] + m[:-1, :-1]
    return int(((count == 1) | (count == 3)).sum())


def test_strokes_and_boxes_both_occur():
    boxes = large_masks(64, 64, gens(range(40)), MaskConfig(stroke_prob=0.0))
    strokes = large_masks(64, 64, gens(range(40)), MaskConfig(stroke_prob=1.0))
    # up to 4 boxes: 4 corners each, plus where their edges cross; slanted round strokes: staircases
    assert max(corners(m) for m in boxes) <= 4 * 4 + 2 * 4 * 3
    assert sorted(corners(m) for m in strokes)[5] > 40


def test_coverage_looks_alike_at_any_resolution():
    small = large_masks(32, 32, gens(range(60))).mean()
    large = torch.stack([large_mask(128, 128, g) for g in gens(range(60))]).mean()
    assert abs(float(small - large)) < 0.05


def test_bad_settings_fail_clearly():
    with pytest.raises(ConfigError, match="max_coverage"):
        MaskConfig(min_coverage=0.5, max_coverage=0.4)
    with pytest.raises(ConfigError, match="stroke_width"):
        MaskConfig(stroke_width=(0.5, 0.1))

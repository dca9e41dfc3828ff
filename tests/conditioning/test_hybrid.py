"""CompVis' "hybrid" conditioning: context tokens and concatenated maps from one model."""

import pytest
import torch

from ldmkit.conditioning import ConditioningConfig, build_conditioner
from ldmkit.conditioning.sections import ClassConfig, LowResConfig
from ldmkit.errors import DataError

CPU = torch.device("cpu")


def hybrid():
    return ConditioningConfig(kind="class", hybrid="low_res", class_label=ClassConfig(num_classes=4, embed_dim=8),
                              low_res=LowResConfig(channels=3))


def test_both_parts_reach_the_unet():
    cfg = hybrid()
    assert cfg.concat_channels(4) == 3
    model = build_conditioner(cfg)
    maps = torch.randn(2, 3, 8, 8)
    cond = model({"class": [1, 2], "low_res": maps}, 2, CPU)
    assert set(cond) == {"context", "concat"}
    assert cond["context"].shape == (2, 1, 8) and torch.equal(cond["concat"], maps)
    null = model.null(2, CPU)
    assert set(null) == {"context", "concat"}
    dropped = model.drop(cond, torch.tensor([False, True]))
    assert torch.equal(dropped["concat"][0], torch.zeros(3, 8, 8)) and torch.equal(dropped["concat"][1], maps[1])
    assert model.needs_images and model.batch_keys == ("label", "image")


def test_raw_condition_must_name_both_parts():
    model = build_conditioner(hybrid())
    with pytest.raises(DataError, match="class, low_res"):
        model([1, 2], 2, CPU)


def test_hybrid_needs_a_context_kind():
    with pytest.raises(ValueError, match="hybrid"):
        ConditioningConfig(kind="low_res", hybrid="low_res")

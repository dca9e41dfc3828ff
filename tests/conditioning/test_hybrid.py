"""CompVis' "hybrid" conditioning: context tokens and concatenated maps from one model."""

import pytest
import torch

from ldmkit.conditioning import ConditioningConfig, build_conditioner
from ldmkit.conditioning.sections import ClassConfig, LowResConfig
from ldmkit.errors import DataError
from ldmkit.training.ldm import drop

CPU = torch.device("cpu")


def hybrid():
    return ConditioningConfig(kind="class", hybrid="low_res", class_label=ClassConfig(num_classes=4, embed_dim=8),
                              low_res=LowResConfig(channels=3))


def test_both_parts_reach_the_unet():
    cfg = hybrid()
    assert cfg.concat_channels(4) == 3 and cfg.kinds == ("class", "low_res")
    model = build_conditioner(cfg)
    maps = torch.randn(2, 3, 8, 8)
    cond = model({"class": torch.tensor([1, 2]), "low_res": maps})
    assert set(cond) == {"context", "concat"}
    assert cond["context"].shape == (2, 1, 8) and torch.equal(cond["concat"], maps)
    assert torch.equal(cond["context"][:, 0], model.parts["class"].embedding.weight[[1, 2]])
    null = model.null(2, CPU)
    assert set(null) == {"context", "concat"}
    dropped = drop(cond, null, torch.tensor([False, True]))
    assert torch.equal(dropped["concat"][0], torch.zeros(3, 8, 8)) and torch.equal(dropped["concat"][1], maps[1])
    assert torch.equal(dropped["context"][0], null["context"][0]) and torch.equal(dropped["context"][1],
                                                                                    cond["context"][1])


def test_condition_must_name_both_parts():
    model = build_conditioner(hybrid())
    with pytest.raises(DataError, match="class, low_res"):
        model(torch.tensor([1, 2]))
    with pytest.raises(DataError, match="class, low_res"):
        model({"class": torch.tensor([1, 2])})


def test_hybrid_needs_a_context_kind():
    with pytest.raises(ValueError, match="hybrid"):
        ConditioningConfig(kind="low_res", hybrid="low_res")

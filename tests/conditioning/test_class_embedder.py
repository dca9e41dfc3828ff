"""The class embedder: one learned token per class, a null class for guidance, CompVis' layout."""

import pytest
import torch

from ldmkit.conditioning import ConditioningConfig, build_conditioner
from ldmkit.conditioning.sections import ClassConfig
from ldmkit.errors import ConfigError, DataError
from ldmkit.training.ldm import drop

CPU = torch.device("cpu")


def embedder(**kwargs):
    return build_conditioner(ConditioningConfig(kind="class", class_label=ClassConfig(embed_dim=8, **kwargs)))


def test_tokens_are_rows_of_the_table():
    model = embedder(num_classes=5)
    context = model(torch.tensor([0, 3, 4]))["context"]
    assert context.shape == (3, 1, 8)
    assert torch.equal(context[:, 0], model.embedding.weight[[0, 3, 4]])
    assert list(model.state_dict()) == ["embedding.weight"]  # CompVis' name


def test_default_null_is_an_extra_learned_row():
    model = embedder(num_classes=5)
    assert model.embedding.weight.shape == (6, 8)
    null = model.null(2, CPU)["context"]
    assert torch.equal(null, model.embedding.weight[5].expand(2, 1, 8))
    assert torch.equal(model(torch.tensor([5, 5]))["context"], null)  # the null label is the unconditional model
    mixed = model(torch.tensor([2, 5]))["context"]
    assert torch.equal(mixed[1], null[1]) and torch.equal(mixed[0, 0], model.embedding.weight[2])


def test_null_index_inside_the_table_as_in_compvis():
    model = embedder(num_classes=11, null_index=10)  # the golden fixture: 11 rows, class 10 unconditional
    assert model.embedding.weight.shape == (11, 8)
    assert torch.equal(model.null(1, CPU)["context"][0, 0], model.embedding.weight[10])
    assert model(torch.tensor([10]))["context"].shape == (1, 1, 8)


def test_bad_labels_are_named():
    model = embedder(num_classes=5)
    with pytest.raises(DataError, match=r"\[0, 6\)"):
        model(torch.tensor([6]))
    with pytest.raises(DataError, match="integers"):
        model(torch.tensor([1.0]))
    with pytest.raises(DataError, match=r"\(B,\) tensor"):
        model([1, 2])  # user inputs (ints, names) are read by ldmkit.pipeline.conditions
    with pytest.raises(DataError, match=r"of shape \(1, 2\)"):
        model(torch.tensor([[1, 2]]))


def test_drop_replaces_the_dropped_samples_by_the_null_token():
    model = embedder(num_classes=5)
    cond = model(torch.tensor([0, 1, 2]))
    dropped = drop(cond, model.null(3, CPU), torch.tensor([True, False, True]))["context"]
    assert torch.equal(dropped[[0, 2]], cond["context"][[0, 2]])
    assert torch.equal(dropped[1, 0], model.embedding.weight[5])


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="class_label.null_index"):
        ClassConfig(num_classes=5, null_index=6)
    with pytest.raises(ConfigError, match="class_label.num_classes"):
        ClassConfig(num_classes=0)


def test_timestep_injection_passes_the_labels_and_holds_no_table():
    model = embedder(num_classes=5, injection="timestep")
    assert list(model.state_dict()) == []  # the table is the UNet's label_emb
    assert torch.equal(model(torch.tensor([0, 3, 4]))["y"], torch.tensor([0, 3, 4]))
    assert torch.equal(model.null(2, CPU)["y"], torch.tensor([5, 5]))
    with pytest.raises(ConfigError, match="injection"):
        ClassConfig(injection="concat")


def test_timestep_injection_and_the_unet_class_table_come_together():
    from dataclasses import replace

    from ldmkit.pipeline import LDMConfig
    from ldmkit.unet import UNET_PRESETS

    unet = replace(UNET_PRESETS["tiny"], in_channels=3, out_channels=3, num_classes=None)  # pixel space
    cond = ConditioningConfig(kind="class", class_label=ClassConfig(num_classes=5, injection="timestep"))
    with pytest.raises(ConfigError, match="set unet.num_classes=6"):
        LDMConfig(unet=unet, conditioning=cond)
    with pytest.raises(ConfigError, match="no class labels reach the timestep embedding"):
        LDMConfig(unet=replace(unet, num_classes=6))
    LDMConfig(unet=replace(unet, num_classes=6), conditioning=cond)

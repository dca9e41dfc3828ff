from types import SimpleNamespace

import pytest
import torch

import ldmkit
from ldmkit.conditioning import ConditioningConfig
from ldmkit.errors import ConfigError
from ldmkit.evaluation.generation import DataConditions, all_gather_rows, check_conditions, generated_features


def test_features_of_a_sample_depend_on_its_seed_only(tiny_ldm_file, tiny_features):
    pipe = ldmkit.load(tiny_ldm_file, device="cpu")
    whole, preview = generated_features(pipe, tiny_features, n=3, seed=5, steps=2, batch_size=3, keep_images=2)
    single, _ = generated_features(pipe, tiny_features, n=3, seed=5, steps=2, batch_size=1)
    torch.testing.assert_close(whole.features, single.features, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(whole.logits, single.logits, rtol=1e-4, atol=1e-5)
    assert whole.features.shape == (3, 8) and whole.logits.shape == (3, 5) and preview.shape == (2, 3, 32, 32)
    # sample i of a run from seed 5 is sample i - 1 of a run from seed 6
    shifted, _ = generated_features(pipe, tiny_features, n=2, seed=6, steps=2, batch_size=2)
    torch.testing.assert_close(shifted.features, whole.features[1:], rtol=1e-4, atol=1e-5)


def test_single_process_gather_is_the_identity():
    rows = torch.arange(10.0).reshape(5, 2)
    assert torch.equal(all_gather_rows(rows, 5, 0, 1), rows)


class ListDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 50

    def __getitem__(self, i):
        return {"image": torch.full((3, 4, 4), float(i)), "label": 100 + i, "caption": f"item {i}", "index": i}


def fake_pipe(kind: str):
    return SimpleNamespace(config=SimpleNamespace(conditioning=ConditioningConfig(kind=kind)),
                           device=torch.device("cpu"))


def test_conditions_come_from_random_reference_samples_chosen_by_each_seed():
    conditions = DataConditions(ListDataset(), fake_pipe("class"))
    picks = conditions.picks([3, 4, 5, 6])
    assert picks == conditions.picks([3, 4]) + conditions.picks([5, 6])  # a seed's pick ignores its batch
    assert len(set(conditions.picks(range(40)))) > 20  # spread over the dataset
    labels = conditions([3, 4, 5, 6])  # read from each picked sample's batch fields, as training reads them
    assert labels.tolist() == [100 + i for i in picks]
    captions = DataConditions(ListDataset(), fake_pipe("text"))([3, 4])
    assert captions == [f"item {i}" for i in picks[:2]]


def test_a_conditional_model_needs_a_source_of_conditions():
    with pytest.raises(ConfigError, match="conditioned on 'class' \\(it reads label.*--condition-from-data"):
        check_conditions(fake_pipe("class"), None)
    check_conditions(fake_pipe("none"), None)


def test_a_class_conditional_model_samples_with_the_labels_of_random_reference_images(image_folder, tiny_features):
    pytest.importorskip("ldmkit.conditioning.class_embedder")
    from ldmkit.conditioning import ConditioningConfig
    from ldmkit.conditioning.sections import ClassConfig
    from ldmkit.data import DataConfig, build_dataset
    from ldmkit.pipeline import LatentDiffusion, LDMConfig, Pipeline
    from ldmkit.unet.config import UNetConfig

    unet = UNetConfig(in_channels=3, out_channels=3, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                      attention_resolutions=(2,), num_head_channels=16, use_spatial_transformer=True, context_dim=16)
    cfg = LDMConfig(unet=unet, conditioning=ConditioningConfig(kind="class", class_label=ClassConfig(2, 16)),
                    image_size=16)
    pipe = Pipeline(LatentDiffusion(cfg))
    dataset = build_dataset(DataConfig(dataset="folder", path=str(image_folder), resolution=16), "all")
    conditions = DataConditions(dataset, pipe)
    seen = []
    original = pipe.model.conditioner.forward

    def spy(raw, *args, **kwargs):
        seen.append(raw)
        return original(raw, *args, **kwargs)

    pipe.model.conditioner.forward = spy
    with pytest.raises(ConfigError, match="conditioned on 'class'"):
        generated_features(pipe, tiny_features, n=4, steps=1)
    samples, _ = generated_features(pipe, tiny_features, n=4, steps=1, batch_size=4, conditions=conditions)
    assert samples.features.shape == (4, 8)
    expected = [dataset[j]["label"] for j in conditions.picks([0, 1, 2, 3])]  # the folders a/ and b/
    assert seen[0].tolist() == expected


def test_reference_classes_map_to_the_model_classes_by_name_before_anything_is_sampled():
    from ldmkit.conditioning.sections import ClassConfig
    from ldmkit.evaluation.generation import model_labels

    named = ConditioningConfig(kind="class", class_label=ClassConfig(3, 16, names=("apple", "banana", "cherry")))
    assert model_labels(named, ["banana", "cherry"], "refs").tolist() == [1, 2]  # folder i -> the model's label
    with pytest.raises(ConfigError, match=r"refs has classes this model does not know \('durian'\)"):
        model_labels(named, ["apple", "durian"], "refs")
    with pytest.raises(ConfigError, match="refs has no class sub-folders"):
        model_labels(named, ["(root)"], "refs")
    unnamed = ConditioningConfig(kind="class", class_label=ClassConfig(3, 16))
    assert model_labels(unnamed, ["a", "b", "c"], "refs") is None  # index for index
    for classes in (["a", "b"], ["a", "b", "c", "d"]):
        with pytest.raises(ConfigError, match=f"refs has {len(classes)} classes .*but the model has 3 and no class"):
            model_labels(unnamed, classes, "refs")
    assert model_labels(ConditioningConfig(kind="text"), ["(root)"], "refs") is None

    class Fruit(ListDataset):
        class_names = ["banana", "cherry"]

        def __getitem__(self, i):
            return {**super().__getitem__(i), "label": i % 2}

    pipe = SimpleNamespace(config=SimpleNamespace(conditioning=named), device=torch.device("cpu"))
    conditions = DataConditions(Fruit(), pipe, "refs")
    picks = conditions.picks([0, 1, 2, 3])
    assert conditions([0, 1, 2, 3]).tolist() == [1 + j % 2 for j in picks]  # banana: 1, cherry: 2

import pytest
import torch

from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.conditioning import ConditioningConfig, build_conditioner
from ldmkit.conditioning.sections import SemanticConfig
from ldmkit.conditioning.semantic import SemanticMap, downsample_label_map
from ldmkit.errors import ConfigError, DataError, ShapeError
from ldmkit.pipeline.model import LDMConfig
from ldmkit.sampling.guidance import classifier_free_guidance
from ldmkit.training.ldm import drop
from ldmkit.unet.config import UNetConfig

CPU = torch.device("cpu")


def test_downsampling_gives_each_latent_pixel_its_class_shares():
    label_map = torch.zeros(1, 8, 8, dtype=torch.int64)
    label_map[0, :4, :4] = 2  # one full 4x4 block of class 2
    label_map[0, 4:6, 4:6] = 1  # a quarter of the bottom-right block is class 1
    concat = downsample_label_map(label_map, 3, 4)  # (1, 3, 2, 2)
    expected = torch.tensor([[[0, 1], [1, 0.75]], [[0, 0], [0, 0.25]], [[1, 0], [0, 0]]])
    torch.testing.assert_close(concat[0], expected)
    rand = torch.randint(0, 5, (3, 16, 12))
    pooled = downsample_label_map(rand, 5, 4)
    assert pooled.shape == (3, 5, 4, 3)
    torch.testing.assert_close(pooled.sum(1), torch.ones(3, 4, 3))  # shares sum to one
    torch.testing.assert_close(downsample_label_map(rand, 5, 1).argmax(1), rand)  # f = 1: plain one-hot


def test_conditioner_inputs_and_null():
    sem = build_conditioner(ConditioningConfig(kind="semantic", semantic=SemanticConfig(num_classes=4, factor=2)))
    assert isinstance(sem, SemanticMap) and sem.concat_channels == 4
    one = torch.randint(0, 4, (8, 12))
    batched = sem(one.expand(3, 8, 12))["concat"]
    assert batched.shape == (3, 4, 4, 6)
    torch.testing.assert_close(batched[0], downsample_label_map(one[None], 4, 2)[0])
    torch.testing.assert_close(sem(one[None].to(torch.uint8))["concat"][0], batched[0])  # any integer dtype
    dropped = drop(sem(one.expand(2, 8, 12)), sem.null(2, CPU), torch.tensor([True, False]))["concat"]
    assert torch.equal(dropped[0], batched[0]) and torch.all(dropped[1] == 0)
    guided = classifier_free_guidance(lambda x, t, concat: x + concat.sum(1, keepdim=True),
                                      sem(one.expand(2, 8, 12)), sem.null(2, CPU), 3.0, short_circuit=False)
    out = guided(torch.zeros(2, 1, 4, 6), torch.zeros(2))
    torch.testing.assert_close(out, torch.full((2, 1, 4, 6), 3.0))  # null broadcasts to the map's size


def test_bad_maps_say_what_is_wrong():
    sem = SemanticMap(SemanticConfig(num_classes=4, factor=4))
    with pytest.raises(DataError, match=r"ids must be in \[0, 4\), got \[0, 9\]"):
        sem(torch.tensor([[[0, 9] * 2] * 4]))
    with pytest.raises(ShapeError, match="6x8 px cannot be pooled by the first stage's f = 4"):
        sem(torch.zeros(1, 6, 8, dtype=torch.int64))
    with pytest.raises(DataError, match="integer class ids"):
        sem(torch.zeros(1, 4, 4))
    with pytest.raises(ShapeError, match=r"must be a \(B, H, W\) tensor of class ids, got \(4, 4\)"):
        sem(torch.zeros(4, 4, dtype=torch.int64))  # one (H, W) map is read by ldmkit.pipeline.conditions
    with pytest.raises(ShapeError, match=r"must be a \(B, H, W\) tensor of class ids, got NoneType"):
        sem(None)


def test_factor_must_match_the_first_stage():
    unet = UNetConfig(in_channels=4 + 11, out_channels=4, num_heads=2)
    kl4 = AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 2, 4), num_res_blocks=1)
    LDMConfig(first_stage=kl4, unet=unet, conditioning=ConditioningConfig(kind="semantic"))  # f = 4 = factor
    with pytest.raises(ConfigError, match="semantic.factor is 2, but the first stage downsamples by 4"):
        LDMConfig(first_stage=kl4, unet=unet,
                  conditioning=ConditioningConfig(kind="semantic", semantic=SemanticConfig(factor=2)))
    with pytest.raises(ConfigError, match="in_channels is 15.*set unet.in_channels=7"):
        LDMConfig(first_stage=kl4, unet=unet,
                  conditioning=ConditioningConfig(kind="semantic", semantic=SemanticConfig(num_classes=3)))

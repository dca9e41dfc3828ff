import pytest
import torch

from ldmkit.config import from_dict, to_dict
from ldmkit.errors import ConfigError
from ldmkit.unet import UNET_PRESETS, UNet, UNetConfig


def n_params(cfg: UNetConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in UNet(cfg).parameters())


def test_presets_round_trip_through_plain_dicts():
    for cfg in UNET_PRESETS.values():
        assert from_dict(UNetConfig, to_dict(cfg)) == cfg


def test_tiny_presets_are_tiny_and_sd_v1_has_the_published_size():
    for name in ("tiny", "tiny-crossattn", "tiny-legacy"):
        assert n_params(UNET_PRESETS[name]) < 1_100_000
    assert n_params(UNET_PRESETS["sd-v1"]) == 859_520_964  # Stable Diffusion v1's UNet


@pytest.mark.parametrize(
    "kwargs, ch, upsample, expected",
    [
        (dict(num_head_channels=32, use_spatial_transformer=True, context_dim=8), 256, False, (8, 32)),
        (dict(num_heads=8, legacy=False, use_spatial_transformer=True, context_dim=8), 640, True, (8, 80)),
        # legacy SpatialTransformer: the head width is channels // heads even with num_head_channels
        (dict(num_head_channels=96, use_spatial_transformer=True, context_dim=8), 128, False, (1, 128)),
        (dict(num_head_channels=96, legacy=False, use_spatial_transformer=True, context_dim=8), 128, False, (1, 96)),
        # legacy AttentionBlock: num_heads_upsample in the output blocks only while legacy is true
        (dict(num_heads=4, num_heads_upsample=2), 64, False, (4, 16)),
        (dict(num_heads=4, num_heads_upsample=2), 64, True, (2, 32)),
        (dict(num_heads=4, num_heads_upsample=2, legacy=False), 64, True, (4, 16)),
        (dict(num_heads=4, num_head_channels=16), 128, True, (8, 16)),  # num_head_channels wins
    ],
)
def test_attention_heads_follow_compvis(kwargs, ch, upsample, expected):
    cfg = UNetConfig(model_channels=ch, channel_mult=(1,), attention_resolutions=(), **kwargs)
    assert cfg.attention_heads(ch, upsample) == expected


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(num_heads=-1, num_head_channels=-1), "num_heads"),
        (dict(model_channels=48), "channel_mult"),
        (dict(context_dim=64), "use_spatial_transformer"),
        (dict(use_spatial_transformer=True), "context_dim"),
        (dict(num_heads=3), "num_heads"),
        (dict(num_head_channels=48), "num_head_channels"),
        (dict(dropout=1.0), "dropout"),
        (dict(use_linear_in_transformer=True), "use_linear_in_transformer"),
        (dict(attention_resolutions=(3,)), "attention_resolutions"),
        (dict(attention_resolutions=(0,)), "attention_resolutions"),
    ],
)
def test_invalid_configs_name_the_key(kwargs, key):
    base = dict(model_channels=32, channel_mult=(1, 2), attention_resolutions=(2,), num_heads=2)
    with pytest.raises(ConfigError, match=f"'{key}'"):
        UNetConfig(**{**base, **kwargs})


def test_attention_resolutions_must_name_a_level():
    """A factor no level has would build no attention layer at all, without a word."""
    with pytest.raises(ConfigError) as info:
        from_dict(UNetConfig, {"channel_mult": [1, 2, 2], "attention_resolutions": [3], "num_heads": 2})
    assert str(info.value) == ("unet config key 'attention_resolutions': 3 is not the downsampling factor of a level; "
                               "with 3 levels choose from [1, 2, 4]")
    # a power of two past the deepest level: CompVis ignores it and its released configs have some, so the
    # UNet's config takes it; ldmkit's own training configs refuse it (LDMRunConfig, tests/training/test_config.py)
    cfg = UNetConfig(channel_mult=(1, 2), attention_resolutions=(2, 8), num_heads=2)
    with pytest.raises(ConfigError, match=r"8 is not the downsampling factor of a level; with 2 levels choose from "
                                          r"\[1, 2\]"):
        cfg.check_attention_levels()
    ok = UNetConfig(channel_mult=(1, 2, 2), attention_resolutions=(4, 1), num_heads=2)
    ok.check_attention_levels()
    assert ok.attention_resolutions == (1, 4) and ok.level_factors == [1, 2, 4]

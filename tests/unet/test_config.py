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
    ],
)
def test_invalid_configs_name_the_key(kwargs, key):
    base = dict(model_channels=32, channel_mult=(1, 2), num_heads=2)
    with pytest.raises(ConfigError, match=f"'{key}'"):
        UNetConfig(**{**base, **kwargs})

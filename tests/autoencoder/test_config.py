import pytest

from ldmkit.autoencoder import AutoencoderConfig
from ldmkit.config import from_dict, to_dict
from ldmkit.errors import ConfigError


def test_downsample_factor_and_latent_channels():
    assert AutoencoderConfig(ch_mult=(1,)).downsample_factor == 1
    assert AutoencoderConfig(ch_mult=(1, 2, 4, 4)).downsample_factor == 8
    assert AutoencoderConfig(kind="vq", embed_dim=3).latent_channels == 3
    identity = AutoencoderConfig(kind="identity", in_channels=1, ch_mult=(1, 2, 4))
    assert (identity.downsample_factor, identity.latent_channels) == (1, 1)


def test_yaml_round_trip_gives_tuples():
    cfg = AutoencoderConfig(kind="vq", ch=64, ch_mult=(1, 2), attn_factors=(2,), n_embed=256)
    data = to_dict(cfg)
    assert data["ch_mult"] == [1, 2]
    assert from_dict(AutoencoderConfig, data) == cfg


@pytest.mark.parametrize("overrides, key", [
    ({"ch": 48}, "ch_mult"),
    ({"ch": 32, "ch_mult": [1, 1.5]}, "ch_mult"),
    ({"ch_mult": []}, "ch_mult"),
    ({"ch_mult": [1, 2], "attn_factors": [4]}, "attn_factors"),
    ({"attn_factors": [3]}, "attn_factors"),
    ({"num_res_blocks": 0}, "num_res_blocks"),
    ({"n_embed": 1}, "n_embed"),
    ({"dropout": 1.0}, "dropout"),
    ({"vq_usage_decay": 1.0}, "vq_usage_decay"),
    ({"kind": "vae"}, "kind"),
])
def test_invalid_values_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key):
        from_dict(AutoencoderConfig, overrides)

import dataclasses
import json

import pytest
import torch

from ldmkit.autoencoder import AutoencoderConfig, build_autoencoder
from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.interop.diffusers_autoencoder import (
    config_from_diffusers,
    diffusers_config,
    from_diffusers,
    from_diffusers_state_dict,
    to_diffusers_state_dict,
)
from ldmkit.interop.diffusers_models import load_autoencoder_folder, save_autoencoder_folder

diffusers = pytest.importorskip("diffusers")

CONFIGS = {  # attention at one level (encoder and decoder), three levels with a shortcut conv
    "kl": AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_factors=(2,)),
    "vq": AutoencoderConfig(kind="vq", ch=32, ch_mult=(1, 1, 2), num_res_blocks=2, attn_factors=(1,), z_channels=3,
                            embed_dim=5, n_embed=16),
}


def plain(config) -> dict:
    """A diffusers config as JSON data, without its private keys (tuples and lists compare equal)."""
    return json.loads(json.dumps({k: v for k, v in config.items() if not k.startswith("_")}))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_diffusers_model_from_the_folder_gives_the_same_outputs(name, tmp_path, randomize):
    cfg = CONFIGS[name]
    ours = randomize(build_autoencoder(cfg))
    save_autoencoder_folder(ours, tmp_path, scale_factor=0.3)
    theirs = getattr(diffusers, "AutoencoderKL" if name == "kl" else "VQModel").from_pretrained(tmp_path).eval()
    assert theirs.config.scaling_factor == 0.3
    x = torch.randn(2, 3, 16, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        if name == "kl":
            torch.testing.assert_close(theirs.encode(x).latent_dist.mean, ours.encode(x).mean, atol=1e-5, rtol=1e-5)
            z = ours.encode(x).mean
            torch.testing.assert_close(theirs.decode(z).sample, ours.decode(z), atol=1e-5, rtol=1e-5)
        else:
            z = ours.encode(x)
            torch.testing.assert_close(theirs.encode(x).latents, z, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(theirs.decode(z).sample, ours.decode(z), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_diffusers_to_ldmkit_to_diffusers_is_identical(name, tmp_path, randomize):
    class_name, kwargs = diffusers_config(CONFIGS[name], 0.5)
    theirs = randomize(getattr(diffusers, class_name)(**kwargs))
    theirs.save_pretrained(tmp_path / "theirs")
    ours, scale = load_autoencoder_folder(tmp_path / "theirs")
    assert scale == 0.5
    assert from_diffusers(theirs)[0].config == ours.config
    save_autoencoder_folder(ours, tmp_path / "back", scale)
    again = type(theirs).from_pretrained(tmp_path / "back")
    assert plain(again.config) == plain(theirs.config)
    expected = theirs.state_dict()
    back = again.state_dict()
    assert back.keys() == expected.keys()
    assert all(torch.equal(back[k], expected[k]) for k in expected)


def test_vq_restart_bookkeeping_is_dropped_and_starts_fresh():
    cfg = dataclasses.replace(CONFIGS["vq"], vq_restart_every=10)
    model = build_autoencoder(cfg)
    model.quantize.usage.fill_(0.5)
    converted = to_diffusers_state_dict(model.state_dict(), cfg)
    assert not any("usage" in k or "calls" in k for k in converted)
    back = from_diffusers_state_dict(converted, cfg)
    assert torch.equal(back["quantize.usage"], torch.full((16,), 1 / 16)) and back["quantize.calls"] == 0
    assert config_from_diffusers("VQModel", diffusers_config(cfg)[1])[0].vq_restart_every == 0


def test_what_diffusers_cannot_express_is_named():
    with pytest.raises(ConfigError, match="embed_dim"):
        diffusers_config(dataclasses.replace(CONFIGS["kl"], embed_dim=3))
    with pytest.raises(ConfigError, match="kind"):
        diffusers_config(AutoencoderConfig(kind="identity"))
    _, kwargs = diffusers_config(CONFIGS["vq"])
    with pytest.raises(ConfigError, match="norm_type"):
        config_from_diffusers("VQModel", {**kwargs, "norm_type": "spatial"})
    _, kwargs = diffusers_config(CONFIGS["kl"])
    with pytest.raises(ConfigError, match="shift_factor"):
        config_from_diffusers("AutoencoderKL", {**kwargs, "shift_factor": 0.1})
    with pytest.raises(ConfigError, match="up_block_types"):  # attention in the decoder only
        config_from_diffusers("AutoencoderKL", {**kwargs, "down_block_types": ["DownEncoderBlock2D"] * 2})


def test_state_dict_for_another_config_is_rejected():
    cfg = CONFIGS["kl"]
    state = to_diffusers_state_dict(build_autoencoder(cfg).state_dict(), cfg)
    del state["decoder.conv_in.weight"]
    with pytest.raises(CheckpointError, match="missing.*decoder.conv_in.weight"):
        from_diffusers_state_dict(state, cfg)
    with pytest.raises(CheckpointError, match="does not fit"):
        to_diffusers_state_dict(build_autoencoder(CONFIGS["vq"]).state_dict(), cfg)

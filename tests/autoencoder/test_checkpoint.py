import pytest
import torch

from ldmkit.autoencoder import (
    AutoencoderConfig,
    autoencoder_state,
    build_autoencoder,
    load_autoencoder,
    save_autoencoder,
)
from ldmkit.checkpoint import save_model_file
from ldmkit.config import to_dict
from ldmkit.errors import CheckpointError

TINY = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=4, embed_dim=3, n_embed=16)


@pytest.mark.parametrize("kind", ["kl", "vq", "identity"])
def test_save_load_round_trip(tmp_path, kind):
    torch.manual_seed(0)
    model = build_autoencoder(AutoencoderConfig(kind=kind, vq_restart_every=1, **TINY))
    x = torch.rand(2, 3, 16, 16)
    model(x)  # VQ training call: moves `usage` and `calls` away from their initial values
    save_autoencoder(tmp_path / "ae.safetensors", model)
    loaded = load_autoencoder(tmp_path / "ae.safetensors")
    assert loaded.config == model.config and not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(loaded.decode(loaded.latent(x)), model.eval().decode(model.latent(x)))


def test_other_kind_is_rejected(tmp_path):
    tensors, config = autoencoder_state(build_autoencoder(AutoencoderConfig(**TINY)))
    save_model_file(tmp_path / "unet.safetensors", tensors, "unet", config)
    with pytest.raises(CheckpointError, match="'unet' model"):
        load_autoencoder(tmp_path / "unet.safetensors")


def test_mismatching_tensors_are_named(tmp_path):
    tensors, _ = autoencoder_state(build_autoencoder(AutoencoderConfig(**TINY)))
    wider = to_dict(AutoencoderConfig(**{**TINY, "ch": 64}))
    save_model_file(tmp_path / "a.safetensors", tensors, "autoencoder", wider)
    with pytest.raises(CheckpointError, match=r"wrong shape .*encoder\.conv_in\.bias: file \(32,\) vs model \(64,\)"):
        load_autoencoder(tmp_path / "a.safetensors")
    vq = build_autoencoder(AutoencoderConfig(kind="vq", **TINY))  # with restart buffers
    no_restart = to_dict(AutoencoderConfig(kind="vq", vq_restart_every=0, **TINY))
    save_model_file(tmp_path / "b.safetensors", autoencoder_state(vq)[0], "autoencoder", no_restart)
    with pytest.raises(CheckpointError, match=r"unexpected quantize\.calls, quantize\.usage"):
        load_autoencoder(tmp_path / "b.safetensors")


def test_unreadable_config_is_a_checkpoint_error(tmp_path):
    tensors, config = autoencoder_state(build_autoencoder(AutoencoderConfig(**TINY)))
    save_model_file(tmp_path / "c.safetensors", tensors, "autoencoder", {**config, "channels": 3})
    with pytest.raises(CheckpointError, match="channels"):
        load_autoencoder(tmp_path / "c.safetensors")

"""Tiny decoders from diffusers AutoencoderTiny folders, TAESD's own decoder files and ldmkit's files."""

import pytest
import torch
from safetensors.torch import save_file

from ldmkit.autoencoder.tiny import TinyDecoder, TinyDecoderConfig
from ldmkit.errors import CheckpointError, DataError
from ldmkit.interop.tiny_decoder import load_tiny_decoder, save_tiny_decoder, weights_file

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def taesd():
    """diffusers' AutoencoderTiny at TAESD's layout (f = 8) with small random weights, saved as a folder."""
    torch.manual_seed(0)
    model = diffusers.AutoencoderTiny(decoder_block_out_channels=(16, 16, 16, 16),
                                      encoder_block_out_channels=(16, 16, 16, 16)).eval()
    return model


def test_a_diffusers_folder_decodes_as_diffusers_does(taesd, tmp_path):
    taesd.save_pretrained(tmp_path / "taesd")
    ours = load_tiny_decoder(tmp_path / "taesd")
    assert ours.config == TinyDecoderConfig(latent_channels=4, channels=16, blocks=(3, 3, 3, 1))
    z = torch.randn(2, 4, 6, 10)
    with torch.no_grad():
        theirs = taesd.decode(z).sample  # AutoencoderTiny's scaling_factor is 1: z is the diffusion-space latent
        torch.testing.assert_close(ours(z), theirs, atol=1e-5, rtol=1e-5)
    assert ours(z).shape == (2, 3, 48, 80) and weights_file(tmp_path / "taesd").name.endswith(".safetensors")
    taesd.save_pretrained(tmp_path / "fp16", variant="fp16")  # what from_pretrained(variant="fp16") downloads
    assert weights_file(tmp_path / "fp16").name == "diffusion_pytorch_model.fp16.safetensors"
    torch.testing.assert_close(load_tiny_decoder(tmp_path / "fp16")(z), ours(z), atol=1e-5, rtol=1e-5)


def test_taesd_decoder_files_and_ldmkit_files_load_the_same_weights(taesd, tmp_path):
    # TAESD's own decoder file numbers its layers from 1: its index 0 is the clamp, which has no weights
    own = {f"{int(k.split('.')[2]) + 1}.{k.split('.', 3)[3]}": v.clone()
           for k, v in taesd.state_dict().items() if k.startswith("decoder.layers.")}
    save_file(own, str(tmp_path / "taesd_decoder.safetensors"))
    from_taesd = load_tiny_decoder(tmp_path / "taesd_decoder.safetensors")
    save_tiny_decoder(from_taesd, tmp_path / "ours.safetensors")
    ours = load_tiny_decoder(tmp_path / "ours.safetensors")
    z = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(from_taesd(z), taesd.decode(z).sample, atol=1e-5, rtol=1e-5)
        assert torch.equal(ours(z), from_taesd(z))


def test_other_files_are_refused_by_name(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_tiny_decoder(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="a folder without config.json, so not a diffusers AutoencoderTiny"):
        load_tiny_decoder(tmp_path)
    save_file({"encoder.conv.weight": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="is not a TAESD decoder .*'encoder.conv.weight'"):
        load_tiny_decoder(tmp_path / "other.safetensors")
    short = TinyDecoder(TinyDecoderConfig(blocks=(1, 1))).state_dict()  # layers.N...: TAESD names them N + 1
    save_file({f"{int(k.split('.')[1]) + 1}.{k.split('.', 2)[2]}": v for k, v in short.items()},
              str(tmp_path / "short.safetensors"))
    with pytest.raises(CheckpointError, match="does not match the TinyDecoder"):
        load_tiny_decoder(tmp_path / "short.safetensors")
    diffusers.AutoencoderKL(block_out_channels=(32,), norm_num_groups=8).save_pretrained(tmp_path / "vae")
    with pytest.raises(CheckpointError, match="holds a diffusers AutoencoderKL, not an AutoencoderTiny"):
        load_tiny_decoder(tmp_path / "vae")


def test_an_autoencoder_tiny_of_another_layout_is_refused(tmp_path):
    diffusers.AutoencoderTiny(decoder_block_out_channels=(16, 16, 16, 16), encoder_block_out_channels=(16, 16, 16, 16),
                              upsample_fn="bilinear").save_pretrained(tmp_path / "bilinear")
    with pytest.raises(CheckpointError, match="AutoencoderTiny with {'upsample_fn': 'bilinear'}"):
        load_tiny_decoder(tmp_path / "bilinear")

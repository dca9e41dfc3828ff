import pytest
import torch

from ldmkit.autoencoder.model import build_autoencoder
from ldmkit.autoencoder.recenter import recenter_latents
from ldmkit.errors import ConfigError
from tests.autoencoder.test_model import tiny


def test_recentred_latents_are_the_old_ones_less_the_shift_and_decode_to_the_same_images():
    torch.manual_seed(0)
    stage = build_autoencoder(tiny("kl", 2)).eval()
    for p in (stage.quant_conv.bias, stage.post_quant_conv.bias):
        torch.nn.init.normal_(p)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    shift = torch.tensor([0.5, -1.5, 2.0, 0.25])[:stage.post_quant_conv.in_channels]
    with torch.no_grad():
        before, logvar = stage.encode(x).mean, stage.encode(x).logvar
        images = stage.decode(before)
        recenter_latents(stage, shift)
        after = stage.encode(x)
        assert torch.allclose(after.mean, before - shift.view(1, -1, 1, 1), atol=1e-5)
        assert torch.equal(after.logvar, logvar)  # the posterior's width is untouched
        assert torch.allclose(stage.decode(after.mean), images, atol=1e-5)


def test_only_kl_first_stages_and_one_value_per_channel():
    vq = build_autoencoder(tiny("vq", 2))
    with pytest.raises(ConfigError, match="KL first stage.*'vq'"):
        recenter_latents(vq, torch.zeros(vq.post_quant_conv.in_channels))
    kl = build_autoencoder(tiny("kl", 2))
    with pytest.raises(ConfigError, match="latent shift of \\(7,\\) values"):
        recenter_latents(kl, torch.zeros(7))

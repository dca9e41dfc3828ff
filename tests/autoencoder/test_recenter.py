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
        posterior = stage.encode(x)
        before, logvar = posterior.mean, posterior.logvar
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


def test_a_recentred_copy_is_recognised_and_anything_else_is_not():
    import copy

    from ldmkit.autoencoder.recenter import is_recentred_copy

    torch.manual_seed(0)
    original = build_autoencoder(tiny("kl", 2))
    centred = copy.deepcopy(original)
    recenter_latents(centred, torch.tensor([1.0, -2.0, 0.5]))
    assert is_recentred_copy(original, original) and is_recentred_copy(original, centred)
    other = copy.deepcopy(centred)
    with torch.no_grad():
        other.post_quant_conv.bias[0] += 0.1  # a decoder bias that no shift explains
    assert not is_recentred_copy(original, other)
    retrained = copy.deepcopy(original)
    with torch.no_grad():
        next(retrained.decoder.parameters()).add_(1e-3)
    assert not is_recentred_copy(original, retrained)

import pytest
import torch
from torch import nn

from ldmkit.autoencoder import (
    AutoencoderConfig,
    AutoencoderLoss,
    AutoencoderLossConfig,
    NLayerDiscriminator,
    adaptive_weight,
    build_autoencoder,
)
from ldmkit.config import from_dict
from ldmkit.errors import ConfigError


class SquaredDistance(nn.Module):
    """A stand-in perceptual distance with a dropout that must stay off: (B,)."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, a, b):
        return self.drop(a - b).pow(2).flatten(1).mean(1)


def setup(kind="kl", disc_start=2, **loss_kw):
    torch.manual_seed(0)
    model = build_autoencoder(AutoencoderConfig(kind=kind, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                                                z_channels=4, embed_dim=4, n_embed=16))
    cfg = AutoencoderLossConfig(disc_start=disc_start, disc_ch=16, disc_layers=2, **loss_kw)
    loss = AutoencoderLoss(cfg, SquaredDistance(), kind).train()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return model, loss, x


def test_adaptive_weight_by_hand():
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    nll = (torch.tensor([3.0, 4.0, 0.0]) * w).sum()  # grad (3, 4, 0): norm 5
    g = w[0] ** 2  # grad (2, 0, 0): norm 2
    d = adaptive_weight(nll, g, w)
    torch.testing.assert_close(d, torch.tensor(5.0 / (2.0 + 1e-4)))
    assert not d.requires_grad
    assert adaptive_weight(nll, 0.0 * w.sum(), w).item() == 1e4  # 5 / 1e-4 clamped
    assert adaptive_weight(nll, g, w, eps=0.0, max_weight=2.0).item() == 2.0


def test_before_disc_start_no_discriminator_and_plain_sum():
    model, loss, x = setup("kl", disc_start=5)
    calls = []
    loss.discriminator.register_forward_hook(lambda *a: calls.append(1))
    out = model(x, torch.Generator().manual_seed(0))
    total, logs = loss.generator_loss(x, out, step=4, last_layer=model.last_layer())
    l1 = (x - out.reconstruction).abs().mean()
    p = (x - out.reconstruction).pow(2).mean()  # dropout must be inactive
    # the KL sum is weighed per image element, as the paper's pixel-summed objective does
    torch.testing.assert_close(total, l1 + p + 1e-6 * out.regularization / x[0].numel())
    assert "g_loss" not in logs and calls == []
    d_loss, d_logs = loss.discriminator_loss(x, out.reconstruction, step=4)
    assert d_loss.item() == 0.0 and calls == [] and not loss.adversarial_active(4)


def test_after_disc_start_adaptive_weight_matches_separate_backward_passes():
    model, loss, x = setup("vq", disc_start=2, codebook_weight=0.5)
    out = model.eval()(x)  # eval: no codebook restarts between the passes below
    total, logs = loss.generator_loss(x, out, step=2, last_layer=model.last_layer())

    def last_layer_grad(objective):
        model.zero_grad()
        o = model(x)
        objective(o).backward()
        return model.last_layer().grad.clone()

    def rec(o):
        return (x - o.reconstruction).abs().mean() + (x - o.reconstruction).pow(2).mean()

    def adv(o):
        return -loss.discriminator(o.reconstruction).mean()

    expected_d = 0.5 * last_layer_grad(rec).norm() / (last_layer_grad(adv).norm() + 1e-4)
    torch.testing.assert_close(logs["d_weight"], expected_d)
    g = -loss.discriminator(out.reconstruction).mean()
    torch.testing.assert_close(total, rec(out) + 0.5 * out.regularization + expected_d * g)
    loss.discriminator.zero_grad(set_to_none=True)
    model.zero_grad()
    total.backward()
    assert all(p.grad is None for p in loss.discriminator.parameters())  # G step leaves D alone
    assert model.decoder.conv_out.weight.grad is not None


def test_discriminator_hinge_loss():
    model, loss, x = setup("kl", disc_start=0)
    out = model(x, torch.Generator().manual_seed(0))
    d_loss, logs = loss.discriminator_loss(x, out.reconstruction, step=0)
    real, fake = loss.discriminator(x), loss.discriminator(out.reconstruction)
    expected = 0.5 * ((1 - real).clamp_min(0).mean() + (1 + fake).clamp_min(0).mean())
    torch.testing.assert_close(d_loss, expected)
    d_loss.backward()
    assert all(p.grad is None for p in model.parameters())  # reconstruction is detached
    assert all(p.grad is not None for p in loss.discriminator.parameters())


def test_no_grad_validation_weights_adversarial_term_zero():
    model, loss, x = setup("kl", disc_start=0)
    with torch.no_grad():
        out = model(x, torch.Generator().manual_seed(0))
        total, logs = loss.generator_loss(x, out, step=10, last_layer=model.last_layer())
    assert logs["d_weight"].item() == 0.0 and torch.isfinite(logs["g_loss"])


def test_perceptual_network_is_frozen_and_required():
    _, loss, _ = setup()
    assert not loss.perceptual.training and all(not p.requires_grad for p in loss.perceptual.parameters())
    with pytest.raises(ConfigError, match="perceptual_weight"):
        AutoencoderLoss(AutoencoderLossConfig(), None, "kl")
    AutoencoderLoss(AutoencoderLossConfig(perceptual_weight=0.0, disc_ch=16), None, "kl")


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_patchgan_output_is_a_patch_map(norm):
    d = NLayerDiscriminator(3, ch=16, layers=3, norm=norm)
    assert d(torch.randn(2, 3, 64, 64)).shape == (2, 1, 6, 6)
    conv = d.main[0].weight
    assert abs(conv.std().item() - 0.02) < 0.005


@pytest.mark.parametrize("data, key", [({"disc_ch": 24}, "disc_ch"), ({"disc_layers": 0}, "disc_layers"),
                                       ({"kl_weight": -1.0}, "kl_weight"), ({"disc_norm": "spectral"}, "disc_norm"),
                                       ({"equivariance_weight": -0.5}, "equivariance_weight"),
                                       ({"perceptual_weight": float("nan")}, "'perceptual_weight' must be a finite"),
                                       ({"disc_lr": float("inf")}, "'disc_lr' must be a finite")])
def test_loss_config_validation_names_the_key(data, key):
    with pytest.raises(ConfigError, match=key):
        from_dict(AutoencoderLossConfig, data)


def half(t):
    return torch.nn.functional.interpolate(t, scale_factor=0.5, mode="bilinear", antialias=True)


@pytest.mark.parametrize("kind", ["kl", "vq"])
def test_equivariance_term_decodes_the_halved_latent_against_the_halved_image(kind):
    model, loss, x = setup(kind, disc_start=5, equivariance_weight=0.5)
    plain = AutoencoderLoss(AutoencoderLossConfig(disc_start=5, disc_ch=16, disc_layers=2), SquaredDistance(), kind)
    out = model(x, torch.Generator().manual_seed(0))
    assert out.latent.shape == (2, 4, 16, 16)  # what the decoder decoded: the KL sample, the VQ codes
    torch.testing.assert_close(model.decode_continuous(out.latent), out.reconstruction)
    total, logs = loss.generator_loss(x, out, step=4, last_layer=model.last_layer(), decode=model.decode_continuous)
    base, base_logs = plain.generator_loss(x, out, step=4, last_layer=model.last_layer())
    small = model.decode_continuous(half(out.latent))  # (2, 3, 16, 16)
    eq = (half(x) - small).abs().mean() + (half(x) - small).pow(2).mean()
    torch.testing.assert_close(logs["equivariance"], eq.detach())
    torch.testing.assert_close(total, base + 0.5 * eq)
    assert "equivariance" not in base_logs
    model.zero_grad()
    logs_only = loss.equivariance_loss(x, out.latent, model.decode_continuous)
    logs_only.backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0  # via the latent (VQ: straight-through)


def test_equivariance_term_needs_the_decoder_and_is_off_by_default():
    model, loss, x = setup("kl", disc_start=5, equivariance_weight=0.5)
    out = model(x, torch.Generator().manual_seed(0))
    _, logs = loss.generator_loss(x, out, step=4, last_layer=model.last_layer())  # no decode: left out
    assert "equivariance" not in logs
    assert AutoencoderLossConfig().equivariance_weight == 0.0

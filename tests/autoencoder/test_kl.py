import torch

from ldmkit.autoencoder import DiagonalGaussian


def moments(mean, logvar):
    return torch.cat([mean, logvar], dim=1)


def test_mode_sample_and_kl_closed_forms():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    post = DiagonalGaussian(moments(mean, logvar))
    assert torch.equal(post.mode(), mean)
    eps = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    sample = post.sample(torch.Generator().manual_seed(5))
    torch.testing.assert_close(sample, mean + torch.exp(logvar / 2) * eps)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, torch.exp(logvar / 2)), torch.distributions.Normal(0.0, 1.0)
    ).sum(dim=(1, 2, 3))
    assert post.kl().shape == (2,)
    torch.testing.assert_close(post.kl(), reference)


def test_standard_normal_has_zero_kl_and_logvar_is_clamped():
    assert torch.equal(DiagonalGaussian(torch.zeros(1, 4, 2, 2)).kl(), torch.zeros(1))
    post = DiagonalGaussian(moments(torch.zeros(1, 1, 1, 1), torch.tensor([[[[100.0]]]])))
    assert post.logvar.item() == 20.0
    post = DiagonalGaussian(moments(torch.zeros(1, 1, 1, 1), torch.tensor([[[[-100.0]]]])))
    assert post.logvar.item() == -30.0


def test_bf16_moments_give_float32_posterior():
    post = DiagonalGaussian(torch.randn(1, 8, 2, 2).bfloat16())
    assert post.mean.dtype == post.kl().dtype == torch.float32

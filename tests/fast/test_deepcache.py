"""DeepCache-style feature reuse (fast/deepcache.py): exact with interval 1, cheaper and close otherwise."""

import torch

from ldmkit.fast.deepcache import DeepCacheUNet
from ldmkit.unet import UNET_PRESETS, UNet


def random_unet() -> UNet:
    torch.manual_seed(0)
    unet = UNet(UNET_PRESETS["tiny"]).eval()
    with torch.no_grad():
        for p in unet.parameters():
            if p.ndim > 1 and p.abs().max() == 0:
                p.normal_(0, 0.05)
    return unet


@torch.no_grad()
def test_interval_1_is_the_whole_unet_and_cheap_calls_reuse_the_deep_features():
    unet = random_unet()
    x, t = torch.randn(2, unet.config.in_channels, 16, 16), torch.tensor([500, 500])
    torch.testing.assert_close(DeepCacheUNet(unet, 1)(x, t), unet(x, t), atol=1e-6, rtol=0)
    cached = DeepCacheUNet(unet, 3)
    calls = []
    hooks = [unet.middle_block.register_forward_hook(lambda *a: calls.append(1))]
    first = cached(x, t)  # full
    second = cached(x + 0.01, t - 10)  # cheap: no middle block
    cached(x, t)
    assert len(calls) == 1
    cached(x, t)  # the 4th call is full again
    assert len(calls) == 2
    for h in hooks:
        h.remove()
    torch.testing.assert_close(first, unet(x, t), atol=1e-6, rtol=0)
    exact = unet(x + 0.01, t - 10)
    assert not torch.equal(second, exact) and (second - exact).abs().mean() < 0.1 * exact.abs().mean()


@torch.no_grad()
def test_a_new_batch_size_refreshes_the_cache():
    unet = random_unet()
    cached = DeepCacheUNet(unet, 10)
    cached(torch.randn(2, unet.config.in_channels, 16, 16), torch.tensor([5, 5]))
    x = torch.randn(4, unet.config.in_channels, 16, 16)
    torch.testing.assert_close(cached(x, torch.full((4,), 5)), unet(x, torch.full((4,), 5)), atol=1e-6, rtol=0)


@torch.no_grad()
def test_when_guidance_stops_the_conditional_half_of_the_features_carries_on():
    unet = random_unet()
    cached, calls = DeepCacheUNet(unet, 3), []
    hook = unet.middle_block.register_forward_hook(lambda *a: calls.append(1))
    x, t = torch.randn(1, unet.config.in_channels, 16, 16), torch.tensor([500])
    uncond_cond = torch.cat([x + 0.5, x])  # a guided call's batch: [unconditional, conditional]
    cached(uncond_cond, torch.cat([t, t]))  # full
    after = cached(x + 0.01, t - 10)  # guidance stopped: a cheap call on the conditional half's features
    hook.remove()
    fresh = DeepCacheUNet(unet, 3)
    fresh(x, t)  # the same run without guidance: full on the conditional input alone
    assert len(calls) == 1  # (the batch of two rounds alike to 1e-6, not bit for bit)
    torch.testing.assert_close(after, fresh(x + 0.01, t - 10), atol=1e-5, rtol=0)

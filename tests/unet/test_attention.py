"""The UNet's attention function: its reduced-precision CPU path computes what SDPA computes."""

import pytest
import torch
import torch.nn.functional as F

from ldmkit.unet.attention import SMALL_ATTENTION, attention


@pytest.mark.parametrize("n, m", [(16, 16), (64, 64), (64, 1), (256, 256)])
def test_bf16_attention_matches_float32_sdpa(n, m):
    g = torch.Generator().manual_seed(n + m)
    q, k, v = (torch.randn(2, 3, length, 32, generator=g) for length in (n, m, m))
    want = F.scaled_dot_product_attention(q, k, v)
    got = attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    assert (got.float() - want).abs().max() < 0.05  # bf16 rounding of inputs and output


def test_small_path_gradients_match_sdpa():
    n = int(SMALL_ATTENTION ** 0.5)  # the largest square case on the explicit path
    g = torch.Generator().manual_seed(0)
    leaves = [torch.randn(1, 2, n, 16, generator=g).bfloat16().requires_grad_() for _ in range(3)]
    attention(*leaves).float().square().sum().backward()
    ours = [x.grad.float() for x in leaves]
    reference = [x.detach().float().requires_grad_() for x in leaves]
    F.scaled_dot_product_attention(*reference).square().sum().backward()
    for a, b in zip(ours, reference):
        assert torch.allclose(a, b.grad, atol=0.1, rtol=0.05)


def test_float32_is_sdpa_exactly():
    q, k, v = (torch.randn(1, 2, 8, 16, generator=torch.Generator().manual_seed(i)) for i in range(3))
    assert torch.equal(attention(q, k, v), F.scaled_dot_product_attention(q, k, v))

"""The UNet's attention layers compute plain scaled dot-product attention (speed-ups: tests/fast/)."""

import torch
import torch.nn.functional as F

from ldmkit.unet.attention import CrossAttention, attention


def test_attention_is_sdpa_exactly():
    q, k, v = (torch.randn(1, 2, 8, 16, generator=torch.Generator().manual_seed(i)) for i in range(3))
    assert torch.equal(attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_one_token_cross_attention_runs_the_full_path_in_the_model_code():
    layer = CrossAttention(32, heads=2, head_dim=16, context_dim=8).eval()
    with torch.no_grad():
        out = layer(torch.randn(1, 5, 32), torch.randn(1, 1, 8))
    assert out.is_contiguous()  # no broadcast shortcut here: that lives in ldmkit/fast/attention.py

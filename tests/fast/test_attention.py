"""The attention shortcuts of fast/attention.py compute what the model's plain attention computes."""

import pytest
import torch
import torch.nn.functional as F

from ldmkit.fast.attention import SMALL_ATTENTION, FastCrossAttention, small_attention, use_fast_attention
from ldmkit.unet.attention import AttentionBlock, CrossAttention


@pytest.mark.parametrize("n, m", [(16, 16), (64, 64), (64, 1), (256, 256)])
def test_bf16_attention_matches_float32_sdpa(n, m):
    g = torch.Generator().manual_seed(n + m)
    q, k, v = (torch.randn(2, 3, length, 32, generator=g) for length in (n, m, m))
    want = F.scaled_dot_product_attention(q, k, v)
    got = small_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    assert (got.float() - want).abs().max() < 0.05  # bf16 rounding of inputs and output


def test_small_path_gradients_match_sdpa():
    n = int(SMALL_ATTENTION ** 0.5)  # the largest square case on the explicit path
    g = torch.Generator().manual_seed(0)
    leaves = [torch.randn(1, 2, n, 16, generator=g).bfloat16().requires_grad_() for _ in range(3)]
    small_attention(*leaves).float().square().sum().backward()
    ours = [x.grad.float() for x in leaves]
    reference = [x.detach().float().requires_grad_() for x in leaves]
    F.scaled_dot_product_attention(*reference).square().sum().backward()
    for a, b in zip(ours, reference):
        assert torch.allclose(a, b.grad, atol=0.1, rtol=0.05)


def test_float32_is_sdpa_exactly():
    q, k, v = (torch.randn(1, 2, 8, 16, generator=torch.Generator().manual_seed(i)) for i in range(3))
    assert torch.equal(small_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def fast_layer(*args, **kwargs) -> CrossAttention:
    return use_fast_attention(CrossAttention(*args, **kwargs))


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-6), (torch.bfloat16, 0.02)])
def test_one_token_cross_attention_without_gradients_matches_the_full_path(dtype, atol):
    torch.manual_seed(0)
    layer = fast_layer(64, heads=4, head_dim=16, context_dim=24).eval().to(dtype)
    assert type(layer) is FastCrossAttention
    x, context = torch.randn(2, 10, 64, dtype=dtype), torch.randn(2, 1, 24, dtype=dtype)
    full = layer(x, context)  # gradients enabled: queries, attention, output projection on every token
    with torch.no_grad():
        shortcut = layer(x, context)  # the value projection of the one token, broadcast
    assert full.is_contiguous() and not shortcut.is_contiguous()  # (each path was taken)
    assert shortcut.shape == full.shape and (shortcut.float() - full.float()).abs().max() <= atol


def test_one_token_cross_attention_keeps_the_full_path_with_gradients():
    layer = fast_layer(32, heads=2, head_dim=16, context_dim=8).train()
    out = layer(torch.randn(1, 5, 32), torch.randn(1, 1, 8))
    assert out.is_contiguous()  # not the broadcast view
    out.sum().backward()  # to_q is in the graph (its gradient is zero), as AdamW's weight decay and DDP expect
    assert layer.to_q.weight.grad is not None and layer.to_q.weight.grad.abs().max() < 1e-6


def test_self_attention_and_longer_contexts_take_the_full_path():
    layer = fast_layer(32, heads=2, head_dim=16, context_dim=32).eval()
    x = torch.randn(1, 6, 32)
    with torch.no_grad():
        for context in (None, torch.randn(1, 2, 32)):
            keys = x if context is None else context
            q, k, v = (p(t).view(1, -1, 2, 16).transpose(1, 2) for p, t in
                       ((layer.to_q, x), (layer.to_k, keys), (layer.to_v, keys)))
            want = layer.to_out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, 6, 32))
            assert torch.allclose(layer(x, context), want, atol=1e-6)


def test_the_swap_keeps_parameters_and_state_dict_and_leaves_the_model_classes_plain():
    block = torch.nn.Sequential(AttentionBlock(32, heads=2), CrossAttention(32, heads=2, head_dim=16))
    before = {k: v.clone() for k, v in block.state_dict().items()}
    use_fast_attention(block)
    assert type(block[0]) is not AttentionBlock and isinstance(block[0], AttentionBlock)
    assert block.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in block.state_dict().items())
    assert type(AttentionBlock(32, heads=2)) is AttentionBlock  # the model code itself is untouched

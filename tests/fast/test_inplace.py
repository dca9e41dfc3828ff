"""In-place first-stage blocks (fast/inplace.py) give the plain blocks' outputs."""

import copy

import torch

from ldmkit.autoencoder.blocks import ResnetBlock
from ldmkit.fast.inplace import InPlaceResnetBlock, use_inplace_blocks


def test_inplace_block_matches_the_plain_block_and_falls_back_with_gradients():
    torch.manual_seed(0)
    plain = torch.nn.Sequential(ResnetBlock(32, 64), ResnetBlock(64, 64)).eval()
    fast = use_inplace_blocks(copy.deepcopy(plain))
    assert all(type(m) is InPlaceResnetBlock for m in fast)
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        want = plain(x)
        got = fast(x.clone())
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    y = fast(x.requires_grad_())  # with gradients: the plain forward, so backward works
    y.sum().backward()
    assert x.grad is not None

import pytest
import torch

from ldmkit.autoencoder.blocks import ResnetBlock


@pytest.mark.parametrize("channels", [(32, 32), (32, 64)], ids=["identity-skip", "nin-shortcut"])
def test_resnet_block_inference_in_place_matches_the_recorded_graph(channels):
    torch.manual_seed(0)
    block = ResnetBlock(*channels).eval()
    x = torch.randn(2, channels[0], 8, 8)
    kept = x.clone()
    recorded = block(x)  # grad enabled: out-of-place ops, a graph for backward
    assert recorded.requires_grad
    with torch.no_grad():
        fast = block(x)  # SiLU and the residual add in place in the block's own buffers
    torch.testing.assert_close(fast, recorded.detach(), atol=0, rtol=0)
    assert torch.equal(x, kept)  # the input (the identity skip) is not written to
    recorded.sum().backward()  # and the recorded graph still differentiates
    assert all(p.grad is not None for p in block.parameters())


def test_resnet_block_keeps_autocast_promotion_without_a_graph():
    torch.manual_seed(0)
    block = ResnetBlock(32, 32).eval()
    x = torch.randn(1, 32, 8, 8)  # float32 input, bfloat16 convolutions: the residual add promotes
    with torch.autocast("cpu", dtype=torch.bfloat16):
        recorded = block(x)
        with torch.no_grad():
            fast = block(x)
    assert fast.dtype == recorded.dtype == torch.float32
    torch.testing.assert_close(fast, recorded.detach(), atol=0, rtol=0)

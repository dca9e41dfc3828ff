import torch
import torch.nn.functional as F

from ldmkit.unet.resblock import group_norm


def test_group_norm_takes_bfloat16_activations_with_float32_weights_on_cpu():
    torch.manual_seed(0)
    norm = group_norm(64)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = (torch.randn(2, 64, 8, 8) * 3 + 1).bfloat16().requires_grad_()
    out = norm(x)  # autocast's case: bfloat16 activations, float32 weights, no float32 round trip
    assert out.dtype == torch.bfloat16
    grad = torch.randn(out.shape).bfloat16()
    out.backward(grad)

    x32 = x.detach().float().requires_grad_()
    reference = F.group_norm(x32, norm.num_groups, norm.weight.detach(), norm.bias.detach(), norm.eps)
    reference.backward(grad.float())
    torch.testing.assert_close(out.float(), reference, atol=0.02, rtol=0.01)  # bfloat16 rounding of the output
    torch.testing.assert_close(x.grad.float(), x32.grad, atol=0.02, rtol=0.02)
    w_grad = torch.autograd.grad(F.group_norm(x32, norm.num_groups, norm.weight, norm.bias, norm.eps),
                                 norm.weight, grad.float())[0]
    torch.testing.assert_close(norm.weight.grad, w_grad, atol=0.05, rtol=0.01)


def test_group_norm_upcasts_other_mixed_dtypes():
    norm = group_norm(64)
    x = torch.randn(2, 64, 4, 4, dtype=torch.float64)
    out = norm(x)  # float64 input, float32 weights: the upcast path (torch's mixed kernel refuses it)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, F.group_norm(x.float(), 32, norm.weight, norm.bias, norm.eps).double())

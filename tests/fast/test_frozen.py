"""A frozen feature network with its BatchNorms folded (fast/frozen.py) computes what it did, gradients included."""

import copy

import pytest
import torch
from torch import nn

from ldmkit.fast.frozen import fold_batchnorm, for_frozen_features
from ldmkit.features.perceptual import PerceptualConfig, build_perceptual


def test_folding_keeps_the_outputs_and_leaves_no_batchnorm_behind():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8)))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # running statistics away from the identity
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 2)
    net.eval().requires_grad_(False)
    x = torch.randn(2, 3, 8, 8)
    want = net(x)
    folded = fold_batchnorm(copy.deepcopy(net))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(folded(x), want, atol=1e-5, rtol=1e-5)
    assert not any(p.requires_grad for p in folded.parameters())


def test_a_batchnorm_in_training_mode_is_left_alone():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    assert isinstance(fold_batchnorm(net)[1], nn.BatchNorm2d)


def test_the_perceptual_distance_and_its_input_gradient_are_unchanged():
    plain = build_perceptual(PerceptualConfig())
    fast = copy.deepcopy(plain)
    for_frozen_features(fast.backbone)
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=gen) * 2 - 1, size=64, mode="bilinear")
    y = (x + 0.2 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    grads = []
    for dist in (plain, fast):
        y_ = y.clone().requires_grad_(True)
        d = dist(x, y_)
        d.sum().backward()
        grads.append((d.detach(), y_.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-5, rtol=1e-4)
    # the gradient moves by rounding too, amplified where the distance is ill-conditioned (measured 0.66 %)
    assert (grads[1][1] - grads[0][1]).norm() < 0.02 * grads[0][1].norm()


def test_a_network_that_still_trains_is_refused():
    with pytest.raises(ValueError, match="frozen network in eval mode"):
        for_frozen_features(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval())

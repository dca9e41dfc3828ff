"""Winograd F(4x4, 3x3) convolutions (fast/winograd.py) against torch's direct convolution."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ldmkit.fast import for_training, winograd
from ldmkit.fast.winograd import (
    WinogradConv2d,
    transform_weight,
    use_winograd,
    winograd_conv3x3,
)
from ldmkit.pipeline import Pipeline

from .test_inference import KL, images, random_model

TOL = 2e-4  # float32 rounding of the transforms, relative to the outputs' scale (about 1 here)


def reference_conv(x, w, b):
    return F.conv2d(x.double(), w.double(), None if b is None else b.double(), padding=1)


@pytest.mark.parametrize("shape", [(1, 3, 4, 4), (2, 8, 13, 7), (3, 5, 9, 16), (1, 4, 1, 1), (2, 6, 22, 31)])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_matches_direct_convolution(shape, channels_last, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(5, shape[1], 3, 3, generator=g) / (9 * shape[1]) ** 0.5
    b = torch.randn(5, generator=g) if bias else None
    y = winograd_conv3x3(x, transform_weight(w), b)
    assert y.shape == (shape[0], 5, *shape[2:]) and y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y.double(), reference_conv(x, w, b), atol=TOL, rtol=0)


def test_bands_cover_the_image(monkeypatch):
    """Many bands of tile rows (a partial last one): the same result as one band."""
    g = torch.Generator().manual_seed(1)
    x, w, b = torch.randn(2, 4, 37, 10, generator=g), torch.randn(3, 4, 3, 3, generator=g) / 6, torch.randn(3)
    whole = winograd_conv3x3(x, transform_weight(w), b)
    monkeypatch.setattr(winograd, "BAND_BYTES", 1)  # one tile row per band
    banded = winograd_conv3x3(x, transform_weight(w), b)
    torch.testing.assert_close(banded, whole, atol=1e-5, rtol=0)  # (other GEMM sizes: other rounding)
    torch.testing.assert_close(banded.double(), reference_conv(x, w, b), atol=TOL, rtol=0)


def test_wrong_weight_for_input_is_an_error():
    with pytest.raises(ValueError, match="does not fit 4 input channels"):
        winograd_conv3x3(torch.randn(1, 4, 8, 8), transform_weight(torch.randn(2, 3, 3, 3)))


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(128, 128, 3, padding=1), nn.SiLU(), nn.Conv2d(128, 128, 3, stride=2, padding=1),
                         nn.Sequential(nn.Conv2d(128, 128, 1), nn.Conv2d(128, 128, 3, padding=1, bias=False)))


def test_use_winograd_replaces_only_3x3_stride_1_convs_and_keeps_the_state_dict():
    plain = net()
    fast = use_winograd(copy.deepcopy(plain))
    assert [type(m) for m in (fast[0], fast[2], fast[3][0], fast[3][1])] == [
        WinogradConv2d, nn.Conv2d, nn.Conv2d, WinogradConv2d]
    assert list(fast.state_dict()) == list(plain.state_dict())
    for (name, a), b in zip(plain.state_dict().items(), fast.state_dict().values()):
        assert torch.equal(a, b), name
    x = torch.randn(2, 128, 16, 16)  # N H W C_in C_out = MIN_WORK
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), atol=TOL, rtol=0)


def test_falls_back_to_the_direct_convolution_outside_float32_cpu_inference():
    conv = nn.Conv2d(128, 128, 3, padding=1)
    fast = use_winograd(nn.Sequential(copy.deepcopy(conv)))[0]
    x = torch.randn(1, 128, 32, 32)
    assert torch.equal(fast(x), conv(x))  # a graph is recorded (training): direct
    fast.weight.requires_grad_(False)
    fast(x).sum().backward()  # only the bias trains: still a graph, still direct
    assert fast.bias.grad is not None and fast.weight.grad is None
    with torch.no_grad():
        assert torch.equal(fast(x[:, :, :4, :4]), conv(x[:, :, :4, :4]))  # below MIN_WORK
        fast64, conv64 = copy.deepcopy(fast).double(), copy.deepcopy(conv).double()
        assert torch.equal(fast64(x.double()), conv64(x.double()))  # float64
        assert not torch.equal(fast(x), conv(x))  # the Winograd path: equal only to rounding
        torch.testing.assert_close(fast(x), conv(x), atol=TOL, rtol=0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(fast(x), conv(x))
        assert torch.equal(torch.vmap(fast)(x[None]), torch.vmap(conv)(x[None]))  # a torch.func transform


def test_cached_transform_follows_weight_updates():
    fast = use_winograd(net())[0]
    x = torch.randn(1, 128, 32, 32)

    def weights_only(y):
        return y - fast.bias[:, None, None]

    with torch.no_grad():
        first = weights_only(fast(x))
        fast.weight.mul_(2)  # in place, as an EMA update or load_state_dict writes weights
        torch.testing.assert_close(weights_only(fast(x)), 2 * first, atol=2 * TOL, rtol=0)
        fast.weight = nn.Parameter(3 * fast.weight)  # a new Parameter, whatever its address
        torch.testing.assert_close(weights_only(fast(x)), 6 * first, atol=6 * TOL, rtol=0)
        fast.weight.data.mul_(0.5)  # invisible to the version counter: clear_cache() says so
        fast.clear_cache()
        torch.testing.assert_close(weights_only(fast(x)), 3 * first, atol=3 * TOL, rtol=0)


def test_cache_is_not_copied_or_pickled(tmp_path):
    fast = use_winograd(net())[0]
    with torch.no_grad():
        fast(torch.randn(1, 128, 32, 32))
    assert fast._cache is not None
    assert copy.deepcopy(fast)._cache is None
    torch.save(fast, tmp_path / "conv.pt")
    assert (tmp_path / "conv.pt").stat().st_size < 1.2 * fast.weight.numel() * 4  # the weights, not 4x more


def test_weights_made_under_inference_mode():
    with torch.inference_mode():
        fast = use_winograd(net())[0]
        x = torch.randn(1, 128, 32, 32)
        torch.testing.assert_close(fast(x), F.conv2d(x, fast.weight, fast.bias, padding=1), atol=TOL, rtol=0)


def test_the_model_has_plain_convs_training_converts_the_first_stage_and_a_pipeline_everything():
    model = random_model(KL)
    assert not any(isinstance(m, WinogradConv2d) for m in model.modules())  # the model code is the paper's
    for_training(model)
    assert any(isinstance(m, WinogradConv2d) for m in model.first_stage.modules())
    assert not any(isinstance(m, WinogradConv2d) for m in model.unet.modules())  # it trains
    pipe = Pipeline(model)
    assert any(isinstance(m, WinogradConv2d) for m in pipe.model.unet.modules())


def test_pipeline_with_winograd_is_close_to_direct_convolutions(monkeypatch):
    """A float32 CPU Pipeline takes the Winograd path (every conv eligible here) and stays at float tolerance."""
    model = random_model(KL)
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 10**9)  # nothing applies: the direct convolutions
    direct = images(Pipeline(copy.deepcopy(model)))
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_WORK", 1)
    pipe = Pipeline(copy.deepcopy(model))
    assert any(isinstance(m, WinogradConv2d) for m in pipe.model.modules())
    fast = images(pipe)
    assert not torch.equal(fast, direct)
    torch.testing.assert_close(fast, direct, atol=1e-4, rtol=0)


def test_filter_budget_keeps_the_high_resolution_layers_and_stays_bounded(monkeypatch):
    layer_bytes = 36 * 128 * 128 * 4
    budget = winograd.FilterCache(max_bytes=layer_bytes + 1)  # room for one layer's transformed filters
    monkeypatch.setattr(winograd, "FILTERS", budget)
    low, high = use_winograd(net())[0], use_winograd(net())[0]
    small, large = torch.randn(1, 128, 32, 32), torch.randn(1, 128, 64, 64)
    with torch.no_grad():
        for layer, x in ((low, small), (high, large), (low, small)):  # the 64^2 layer displaces the 32^2 one
            torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=1), atol=TOL, rtol=0)
    assert high._cache is not None and low._cache is None  # the low-resolution layer runs the direct convolution
    assert budget.used == layer_bytes <= budget.max_bytes
    del high
    import gc

    gc.collect()
    assert budget.used == 0  # a collected layer gives its room back


def test_transform_weight_matches_g_g_gt_in_float64():
    w = torch.randn(5, 3, 3, 3)
    ref = (winograd._G @ w.double() @ winograd._G.T).permute(2, 3, 1, 0).reshape(36, 3, 5)
    torch.testing.assert_close(transform_weight(w).double(), ref, atol=1e-6, rtol=0)

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from ldmkit.errors import LdmkitError
from ldmkit.unet import UNET_PRESETS, UNet, UNetInputError
from ldmkit.unet.attention import AttentionBlock


def randomized(cfg, seed=0) -> UNet:
    """A model in eval mode whose zero-initialised layers are random too, so every path matters."""
    model = UNet(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.1 if p.dim() == 1 else p[0].numel() ** -0.5))
    return model


def inputs(cfg, b=2, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cfg.in_channels, size, size, generator=g)
    t = torch.randint(0, 1000, (b,), generator=g)
    kw = {}
    if cfg.context_dim:
        kw["context"] = torch.randn(b, 5, cfg.context_dim, generator=g)
    if cfg.num_classes:
        kw["y"] = torch.randint(0, cfg.num_classes, (b,), generator=g)
    return x, t, kw


@pytest.mark.parametrize("name", ["tiny", "tiny-crossattn", "tiny-legacy"])
def test_any_size_divisible_by_the_downsampling_works_and_batch_composition_does_not_matter(name):
    cfg = UNET_PRESETS[name]
    model = randomized(cfg)
    x, t, kw = inputs(cfg, b=3, size=12)
    with torch.no_grad():
        out = model(x, t, **kw)
        one = model(x[1:2], t[1:2], **{k: v[1:2] for k, v in kw.items()})
        wide = model(torch.randn(1, cfg.in_channels, 8, 20), t[:1], **{k: v[:1] for k, v in kw.items()})
    assert out.shape == x.shape and wide.shape == (1, cfg.out_channels, 8, 20)
    torch.testing.assert_close(one, out[1:2], atol=1e-5, rtol=1e-5)


def test_a_first_level_wider_than_model_channels_works():
    cfg = dataclasses.replace(UNET_PRESETS["tiny"], channel_mult=(2, 2))  # (the output conv reads 2 x mc channels)
    x, t, kw = inputs(cfg)
    with torch.no_grad():
        assert randomized(cfg)(x, t, **kw).shape == x.shape


def test_fresh_model_predicts_zero_like_compvis():
    cfg = UNET_PRESETS["tiny"]
    x, t, _ = inputs(cfg)
    assert UNet(cfg)(x, t).abs().max() == 0  # the output conv starts at zero


def test_sizes_it_cannot_take_are_named_with_the_nearest_that_work():
    cfg = dataclasses.replace(UNET_PRESETS["tiny"], channel_mult=(1, 1, 2))  # multiple of 4
    model = UNet(cfg)
    with pytest.raises(UNetInputError, match="height 30 is not divisible by 4.*use 28 or 32"):
        model(torch.randn(1, 4, 30, 32), 1)
    with pytest.raises(ValueError, match="width 2 is not divisible by 4.*use 4"):
        model(torch.randn(1, 4, 8, 2), 1)
    # 4 x 4 halves twice to 1 x 1, where a ResBlock's GroupNorm would see one value per group of 32 channels
    assert cfg.model_channels * min(cfg.channel_mult[-2:]) < 64 and cfg.smallest_size == 8
    with pytest.raises(UNetInputError, match="4 x 4 is too small.*make one side 8 or more"):
        model(torch.randn(1, 4, 4, 4), 1)
    assert model(torch.randn(1, 4, 4, 8), 1).shape == (1, 4, 4, 8)  # 1 x 2 at the bottom: two values per group
    wide_bottom = dataclasses.replace(cfg, channel_mult=(1, 2, 2))  # 64 channels there: 1 x 1 is enough
    assert wide_bottom.smallest_size == 4 and UNet(wide_bottom)(torch.randn(1, 4, 4, 4), 1).shape == (1, 4, 4, 4)


def test_scalar_timestep_broadcasts_and_float_timesteps_work():
    cfg = UNET_PRESETS["tiny"]
    model = randomized(cfg)
    x, _, _ = inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(model(x, 10), model(x, torch.tensor([10, 10])))
        torch.testing.assert_close(model(x, torch.tensor(10.0)), model(x, torch.tensor([10, 10])))
        assert not torch.allclose(model(x, 10.5), model(x, 10))


@pytest.mark.parametrize(
    "name, change, match",
    [
        ("tiny", dict(context=torch.randn(2, 3, 32)), "no cross-attention"),
        ("tiny-crossattn", dict(context=None), r"context \(B, N, 32\) is required"),
        ("tiny-crossattn", dict(context=torch.randn(2, 3, 16)), "context_dim"),
        ("tiny-legacy", dict(y=None), "num_classes=10"),
        ("tiny", dict(y=torch.tensor([1, 2])), "no class embedding"),
        ("tiny-legacy", dict(y=torch.tensor([1.0, 2.0])), "integer class labels"),
        ("tiny", dict(t=torch.tensor([1, 2, 3])), r"t must be a scalar or have shape \(B,\)"),
        ("tiny", dict(x=torch.randn(2, 3, 8, 8)), "in_channels=4; pass the other 1 channels as concat"),
        ("tiny", dict(concat=torch.randn(2, 1, 8, 8)), "give 5 channels"),
    ],
)
def test_wrong_or_missing_inputs_raise_clear_errors(name, change, match):
    cfg = UNET_PRESETS[name]
    x, t, kw = inputs(cfg)
    args = {"x": x, "t": t, **kw, **change}
    with pytest.raises(LdmkitError, match=match):
        UNet(cfg)(**args)


def test_class_labels_and_context_change_the_output():
    legacy, cross = UNET_PRESETS["tiny-legacy"], UNET_PRESETS["tiny-crossattn"]
    x, t, _ = inputs(legacy)
    with torch.no_grad():
        model = randomized(legacy)
        assert not torch.allclose(model(x, t, y=torch.tensor([1, 2])), model(x, t, y=torch.tensor([3, 2])))
        model = randomized(cross)
        c = torch.randn(2, 4, 32)
        out, out2 = model(x, t, context=c), model(x, t, context=c + 1)
        assert not torch.allclose(out, out2)


def test_concat_channels_join_x_along_channels():
    cfg = dataclasses.replace(UNET_PRESETS["tiny-crossattn"], in_channels=7)
    model = randomized(cfg)
    x, t, kw = inputs(cfg)
    with torch.no_grad():
        split = model(x[:, :4], t, concat=x[:, 4:], **kw)
        torch.testing.assert_close(split, model(x, t, **kw))
        assert split.shape == (2, 4, 8, 8)
        assert not torch.allclose(split, model(x[:, :4], t, concat=x[:, 4:] + 1, **kw))


def test_gradient_checkpointing_gives_the_same_gradients():
    cfg = UNET_PRESETS["tiny-crossattn"]
    plain = randomized(cfg).train()
    ckpt = UNet(dataclasses.replace(cfg, use_checkpoint=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    x, t, kw = inputs(cfg)
    grads = []
    for model in (plain, ckpt):
        model(x, t, **kw).square().mean().backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["tiny-crossattn", "tiny-legacy"])
def test_bfloat16_autocast_weights_and_channels_last_agree_with_float32(name):
    cfg = UNET_PRESETS[name]
    model = randomized(cfg)
    x, t, kw = inputs(cfg)
    with torch.no_grad():
        ref = model(x, t, **kw)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = model(x, t, **kw)
        last = copy.deepcopy(model).to(memory_format=torch.channels_last)(x, t, **kw)
        fast = model.to(torch.bfloat16, memory_format=torch.channels_last)(x, t, **kw)
    assert auto.dtype == fast.dtype == torch.float32  # returned in x_t's dtype
    scale = ref.abs().max()
    assert (auto - ref).abs().max() < 0.05 * scale and (fast - ref).abs().max() < 0.05 * scale
    torch.testing.assert_close(last, ref, atol=1e-5, rtol=1e-5)


def test_legacy_attention_groups_qkv_channels_per_head():
    torch.manual_seed(0)
    block = AttentionBlock(64, heads=2)
    torch.nn.init.normal_(block.proj_out.weight, std=0.1)
    x = torch.randn(2, 64, 4, 3)
    # CompVis' QKVAttentionLegacy by hand: per head [q | k | v], q and k each scaled by ch^-1/4
    qkv = F.conv1d(block.norm(x).reshape(2, 64, 12), block.qkv.weight, block.qkv.bias)  # (B, 3C, T)
    q, k, v = qkv.reshape(2 * 2, 3 * 32, 12).split(32, dim=1)  # (B * heads, ch, T) each
    scale = 32 ** -0.25
    w = torch.einsum("bct,bcs->bts", q * scale, k * scale).softmax(dim=-1)
    a = torch.einsum("bts,bcs->bct", w, v).reshape(2, 64, 12)
    expected = x + F.conv1d(a, block.proj_out.weight, block.proj_out.bias).reshape(2, 64, 4, 3)
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


def test_state_dict_uses_compvis_names():
    keys = set(UNet(UNET_PRESETS["tiny-crossattn"]).state_dict())
    for key in ("time_embed.0.weight", "input_blocks.0.0.weight", "input_blocks.1.0.in_layers.2.weight",
                "input_blocks.1.0.emb_layers.1.weight", "input_blocks.1.0.out_layers.3.weight",
                "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", "input_blocks.1.1.proj_in.weight",
                "input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight", "input_blocks.2.0.op.weight",
                "middle_block.1.norm.weight", "output_blocks.1.2.conv.weight",
                "output_blocks.0.0.skip_connection.weight",
                "out.0.weight", "out.2.weight"):
        assert key in keys, key
    legacy = set(UNet(UNET_PRESETS["tiny-legacy"]).state_dict())
    assert {"label_emb.weight", "middle_block.1.qkv.weight", "middle_block.1.proj_out.weight"} <= legacy

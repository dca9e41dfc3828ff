import pytest
import torch

from ldmkit.autoencoder import AutoencoderConfig, build_autoencoder, empty_autoencoder
from ldmkit.autoencoder.blocks import AttnBlock
from ldmkit.errors import DataError


def tiny(kind: str, levels: int, **kw) -> AutoencoderConfig:
    return AutoencoderConfig(kind=kind, ch=32, ch_mult=(1,) * levels, num_res_blocks=1, z_channels=4,
                             embed_dim=3, n_embed=16, **kw)


@pytest.mark.parametrize("kind", ["kl", "vq"])
@pytest.mark.parametrize("levels", [1, 2, 3, 4, 5, 6])
def test_encode_decode_shapes_for_every_factor(kind, levels):
    torch.manual_seed(0)
    model = build_autoencoder(tiny(kind, levels)).eval()
    f = 2 ** (levels - 1)
    assert model.downsample_factor == f and model.latent_channels == 3
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = model.latent(x)
        assert z.shape == (2, 3, 32 // f, 32 // f)
        assert model.decode(z).shape == x.shape
        out = model(x, generator=torch.Generator().manual_seed(0))
    assert out.reconstruction.shape == x.shape
    assert out.regularization.ndim == 0 and out.regularization >= 0


def test_identity_first_stage():
    model = build_autoencoder(AutoencoderConfig(kind="identity"))
    x = torch.rand(2, 3, 12, 20) * 2 - 1
    assert list(model.parameters()) == [] and model.last_layer() is None
    assert (model.downsample_factor, model.latent_channels) == (1, 3)
    assert model.encode(x) is x and model.latent(x) is x and model.decode(x) is x
    out = model(x)
    assert out.reconstruction is x and out.regularization.item() == 0.0


def test_kl_latent_is_mode_without_generator_and_sample_with_one():
    torch.manual_seed(0)
    model = build_autoencoder(tiny("kl", 2)).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        post = model.encode(x)
        assert torch.equal(model.latent(x), post.mode())
        sample = model.latent(x, torch.Generator().manual_seed(3))
        assert torch.equal(sample, post.sample(torch.Generator().manual_seed(3)))
        a = model(x, torch.Generator().manual_seed(1))
        b = model(x, torch.Generator().manual_seed(1))
    assert torch.equal(a.reconstruction, b.reconstruction)
    torch.testing.assert_close(a.regularization, post.kl().mean())
    assert model.last_layer() is model.decoder.conv_out.weight


def test_vq_decode_quantises_and_forward_reports_codebook_stats():
    torch.manual_seed(0)
    model = build_autoencoder(tiny("vq", 2)).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        h = model.encode(x)
        codes = model.quantize.embedding.weight[model.quantize.nearest(h)].permute(0, 3, 1, 2)
        assert torch.equal(model.decode(h), model.decode(codes))
        out = model(x)
    torch.testing.assert_close(out.reconstruction, model.decode(h), atol=1e-4, rtol=0)  # z + (e - z) vs e
    assert 1.0 <= out.stats["perplexity"] <= 16 and 0 < out.stats["codes_used"] <= 1


def test_module_tree_uses_compvis_names():
    cfg = AutoencoderConfig(kind="vq", ch=32, ch_mult=(1, 2), num_res_blocks=2, attn_factors=(2,),
                            z_channels=4, embed_dim=3, n_embed=8, vq_restart_every=0)
    shapes = {k: tuple(v.shape) for k, v in build_autoencoder(cfg).state_dict().items()}
    expected = {
        "encoder.conv_in.weight": (32, 3, 3, 3),
        "encoder.down.0.block.1.conv2.weight": (32, 32, 3, 3),
        "encoder.down.0.downsample.conv.weight": (32, 32, 3, 3),
        "encoder.down.1.block.0.nin_shortcut.weight": (64, 32, 1, 1),
        "encoder.down.1.attn.1.proj_out.weight": (64, 64, 1, 1),
        "encoder.mid.attn_1.q.weight": (64, 64, 1, 1),
        "encoder.norm_out.weight": (64,),
        "encoder.conv_out.weight": (4, 64, 3, 3),
        "quant_conv.weight": (3, 4, 1, 1),
        "quantize.embedding.weight": (8, 3),
        "post_quant_conv.weight": (4, 3, 1, 1),
        "decoder.conv_in.weight": (64, 4, 3, 3),
        "decoder.mid.block_2.norm1.weight": (64,),
        "decoder.up.1.block.2.conv1.weight": (64, 64, 3, 3),
        "decoder.up.1.attn.2.k.weight": (64, 64, 1, 1),
        "decoder.up.1.upsample.conv.weight": (64, 64, 3, 3),
        "decoder.up.0.block.0.nin_shortcut.weight": (32, 64, 1, 1),
        "decoder.conv_out.weight": (3, 32, 3, 3),
    }
    for key, shape in expected.items():
        assert shapes.get(key) == shape, key
    assert not any(k.startswith(("encoder.down.1.downsample", "decoder.up.0.upsample", "encoder.down.0.attn"))
                   for k in shapes)
    assert sum(k.startswith("decoder.up.0.block.") and k.endswith("conv1.weight") for k in shapes) == 3
    kl = build_autoencoder(AutoencoderConfig(ch=32, ch_mult=(1,), num_res_blocks=1, z_channels=4, embed_dim=4))
    assert kl.encoder.conv_out.out_channels == 8 and tuple(kl.quant_conv.weight.shape) == (8, 8, 1, 1)


def test_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    block = AttnBlock(32)
    x = torch.randn(2, 32, 3, 5)
    y = block.norm(x)
    q, k, v = (t.flatten(2) for t in (block.q(y), block.k(y), block.v(y)))  # (B, C, HW)
    weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) * 32**-0.5, dim=-1)
    expected = x + block.proj_out(torch.einsum("bij,bcj->bci", weights, v).reshape(x.shape))
    torch.testing.assert_close(block(x), expected)


def test_bad_shapes_raise_clear_errors():
    model = build_autoencoder(tiny("kl", 3))
    with pytest.raises(DataError, match="multiple of the autoencoder's downsampling factor 4"):
        model.encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(DataError, match=r"\(B, 3, H, W\)"):
        model.encode(torch.zeros(1, 1, 32, 32))
    with pytest.raises(DataError, match="latent"):
        model.decode(torch.zeros(1, 4, 8, 8))


def test_bf16_autocast_forward_runs():
    torch.manual_seed(0)
    for kind in ("kl", "vq"):
        model = build_autoencoder(tiny(kind, 2))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(torch.rand(1, 3, 16, 16), torch.Generator().manual_seed(0))
        assert torch.isfinite(out.reconstruction.float()).all() and out.regularization.dtype == torch.float32


@pytest.mark.parametrize("kind", ["kl", "vq", "identity"])
def test_an_empty_autoencoder_has_every_tensor_of_a_built_one_on_the_cpu(kind):
    cfg = AutoencoderConfig(kind=kind, ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=4, embed_dim=3, n_embed=16,
                            vq_restart_every=1)
    built, empty = build_autoencoder(cfg).state_dict(), empty_autoencoder(cfg).state_dict()
    assert [(k, v.shape, v.dtype) for k, v in built.items()] == [(k, v.shape, v.dtype) for k, v in empty.items()]
    assert all(v.device.type == "cpu" for v in empty.values())

"""Adapters on built models: which layers they target, that training starts exactly at the base model, and that
merging them reproduces the adapted model."""

import copy

import pytest
import torch

from ldmkit.autoencoder import AutoencoderConfig
from ldmkit.conditioning import ConditioningConfig
from ldmkit.conditioning.sections import ClassConfig
from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.lora import LoRAConfig, apply_adapter
from ldmkit.lora.adapter import LowRankWeights
from ldmkit.lora.layers import adapter_weights, add_lora, lora_layers, merge_lora
from ldmkit.lora.targets import lora_targets
from ldmkit.pipeline import LatentDiffusion, LDMConfig
from ldmkit.unet import UNET_PRESETS

IDENTITY = AutoencoderConfig(kind="identity", in_channels=4)


def model(preset: str = "tiny-crossattn") -> LatentDiffusion:
    cond = ConditioningConfig(kind="class", class_label=ClassConfig(num_classes=3, embed_dim=32)) \
        if UNET_PRESETS[preset].use_spatial_transformer else ConditioningConfig()
    torch.manual_seed(0)
    m = LatentDiffusion(LDMConfig(IDENTITY, UNET_PRESETS[preset], conditioning=cond, image_size=8)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # no zero layers
    return m


def inputs(m: LatentDiffusion):
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([10.0, 700.0])
    context = torch.randn(2, 1, 32, generator=g) if m.config.unet.context_dim else None
    return x, t, context


def test_target_groups_name_the_layers_of_both_attention_kinds():
    cross = lora_targets(model(), LoRAConfig(rank=1))
    assert cross[:4] == [f"unet.input_blocks.1.1.transformer_blocks.0.attn1.{p}" for p in
                         ("to_q", "to_k", "to_v", "to_out.0")] and len(cross) == 4 * 2 * 7  # 7 transformers
    legacy = lora_targets(model("tiny"), LoRAConfig(rank=1))
    assert legacy == ["unet.input_blocks.3.1.qkv", "unet.input_blocks.3.1.proj_out", "unet.middle_block.1.qkv",
                      "unet.middle_block.1.proj_out", *[f"unet.output_blocks.{i}.1.{p}" for i in (0, 1)
                                                         for p in ("qkv", "proj_out")]]
    everything = lora_targets(model(), LoRAConfig(rank=1, targets=("attention", "proj", "ff", "conv")))
    assert {"unet.input_blocks.1.1.proj_in", "unet.input_blocks.1.1.transformer_blocks.0.ff.net.2",
            "unet.input_blocks.2.0.op", "unet.output_blocks.1.0.skip_connection"} <= set(everything)
    assert lora_targets(model(), LoRAConfig(rank=1, targets=("attn2.to_k",))) == \
        [name for name in cross if name.endswith("attn2.to_k")]
    with pytest.raises(ConfigError, match="'attn3' names no layer of this UNet; use a group"):
        lora_targets(model(), LoRAConfig(rank=1, targets=("attn3",)))
    with pytest.raises(ConfigError, match="lora.text_encoder adapts a text encoder, but this is a 'class' model"):
        lora_targets(model(), LoRAConfig(rank=1, text_encoder=True))


@pytest.mark.parametrize("bad, message", [({"rank": -1}, "lora.rank must be 0"), ({"alpha": 0}, "lora.alpha must be"),
                                          ({"targets": ()}, "lora.targets must list")])
def test_bad_lora_configs(bad, message):
    with pytest.raises(ConfigError, match=message):
        LoRAConfig(**{"rank": 1, **bad})


@pytest.mark.parametrize("preset", ["tiny-crossattn", "tiny"])
def test_adapters_start_at_the_base_model_and_merge_into_the_same_model(preset):
    base = model(preset)
    x, t, context = inputs(base)
    adapted = copy.deepcopy(base)
    names = add_lora(adapted, LoRAConfig(rank=2, alpha=4, targets=("attention", "proj", "ff", "conv")))
    assert set(lora_layers(adapted)) == set(names)
    assert {n for n, p in adapted.named_parameters() if p.requires_grad} == \
        {f"{n}.parametrizations.weight.0.lora_{ab}" for n in names for ab in "AB"}  # the rest is frozen
    with torch.no_grad():
        assert torch.equal(adapted.unet(x, t, context=context), base.unet(x, t, context=context))  # B = 0
        for name, p in adapted.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0, 0.2)
        out = adapted.unet(x, t, context=context)
    assert not torch.allclose(out, base.unet(x, t, context=context))
    adapter = adapter_weights(adapted)
    merged = copy.deepcopy(base)
    apply_adapter(merged, adapter)
    baked = merge_lora(copy.deepcopy(adapted))
    assert lora_layers(baked) == {}
    with torch.no_grad():
        torch.testing.assert_close(merged.unet(x, t, context=context), out, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(baked.unet(x, t, context=context), out, rtol=1e-5, atol=1e-6)
    half = copy.deepcopy(base)
    apply_adapter(half, adapter, weight=0.0)
    assert all(torch.equal(a, b) for a, b in zip(half.state_dict().values(), base.state_dict().values()))


def test_an_adapter_for_other_layers_is_refused_before_anything_changes():
    base = model()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    good = LowRankWeights(torch.ones(2, 32), torch.ones(32, 2), 2.0)
    wrong = LowRankWeights(torch.ones(2, 48), torch.ones(64, 2), 2.0, key="lora_unet_x.lora_down.weight")
    with pytest.raises(CheckpointError, match=r"'lora_unet_x.lora_down.weight' adapts a \(64, 48\) weight, but this "
                                              r"model's unet.middle_block.1.transformer_blocks.0.attn1.to_q is "
                                              r"\(64, 64\): .*another architecture"):
        apply_adapter(base, {"unet.input_blocks.1.1.transformer_blocks.0.attn1.to_q": good,
                             "unet.middle_block.1.transformer_blocks.0.attn1.to_q": wrong})
    with pytest.raises(CheckpointError, match="its layer 'unet.nowhere' is not in this model"):
        apply_adapter(base, {"unet.nowhere": good})
    assert all(torch.equal(v, before[k]) for k, v in base.state_dict().items())

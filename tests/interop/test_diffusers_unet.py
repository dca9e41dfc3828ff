import dataclasses

import pytest
import torch

from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.interop.diffusers_unet import (
    config_from_diffusers,
    diffusers_config,
    from_diffusers,
    from_diffusers_state_dict,
    links,
    to_diffusers,
    to_diffusers_state_dict,
)
from ldmkit.unet import UNET_PRESETS, UNet

pytest.importorskip("diffusers")

CONFIGS = {
    "tiny": UNET_PRESETS["tiny"],  # legacy attention -> UNet2DModel
    "tiny-legacy": UNET_PRESETS["tiny-legacy"],  # + scale-shift, resblock_updown, classes
    "tiny-crossattn": UNET_PRESETS["tiny-crossattn"],  # -> UNet2DConditionModel
    "crossattn-variant": dataclasses.replace(
        UNET_PRESETS["tiny-crossattn"], use_scale_shift_norm=True, use_linear_in_transformer=True,
        transformer_depth=2, num_classes=5, in_channels=6, num_heads=2, num_head_channels=-1),
}


def randomized(cfg, seed=0) -> UNet:
    model = UNet(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.1 if p.dim() == 1 else p[0].numel() ** -0.5))
    return model


@pytest.mark.parametrize("name", list(CONFIGS))
def test_diffusers_model_gives_the_same_outputs_and_converts_back_exactly(name):
    cfg = CONFIGS[name]
    ours = randomized(cfg)
    theirs = to_diffusers(ours).eval()
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, cfg.in_channels, 8, 16, generator=g), torch.tensor([3, 901])
    kw, their_kw = {}, {}
    if cfg.num_classes:
        kw["y"] = their_kw["class_labels"] = torch.tensor([1, 4])
    if cfg.context_dim:
        kw["context"] = their_kw["encoder_hidden_states"] = torch.randn(2, 7, cfg.context_dim, generator=g)
    with torch.no_grad():
        expected = ours(x, t, **kw)
        torch.testing.assert_close(theirs(x, t, **their_kw).sample, expected, atol=1e-5, rtol=1e-5)
        back = from_diffusers(theirs).eval()
        torch.testing.assert_close(back(x, t, **kw), expected, atol=0, rtol=0)
    assert diffusers_config(back.config) == diffusers_config(cfg)
    state = ours.state_dict()
    for key, value in from_diffusers_state_dict(to_diffusers_state_dict(state, cfg), cfg).items():
        assert torch.equal(value, state[key]), key


def test_diffusers_sd_v1_config_reads_back_as_the_preset():
    cfg = UNET_PRESETS["sd-v1"]
    name, kwargs = diffusers_config(cfg)
    assert name == "UNet2DConditionModel" and kwargs["attention_head_dim"] == (8, 8, 8, 8)
    assert kwargs["down_block_types"] == ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    assert config_from_diffusers(name, kwargs) == cfg


def test_what_diffusers_cannot_express_is_named():
    with pytest.raises(ConfigError, match="conv_resample"):
        diffusers_config(dataclasses.replace(UNET_PRESETS["tiny"], conv_resample=False))
    with pytest.raises(ConfigError, match="resblock_updown"):
        diffusers_config(dataclasses.replace(UNET_PRESETS["tiny-crossattn"], resblock_updown=True))
    with pytest.raises(ConfigError, match="num_heads"):  # 2 heads at 32 and at 64 channels
        diffusers_config(dataclasses.replace(UNET_PRESETS["tiny"], attention_resolutions=(1, 2)))
    _, kwargs = diffusers_config(UNET_PRESETS["tiny-crossattn"])
    with pytest.raises(ConfigError, match="freq_shift"):
        config_from_diffusers("UNet2DConditionModel", {**kwargs, "freq_shift": 1})


def test_state_dict_for_another_config_is_rejected():
    cfg = UNET_PRESETS["tiny-crossattn"]
    state = to_diffusers_state_dict(UNet(cfg).state_dict(), cfg)
    del state["conv_in.weight"]
    with pytest.raises(CheckpointError, match="missing.*input_blocks.0.0.weight"):
        from_diffusers_state_dict(state, cfg)
    with pytest.raises(CheckpointError, match="does not fit this config"):
        to_diffusers_state_dict(UNet(UNET_PRESETS["tiny-legacy"]).state_dict(), UNET_PRESETS["tiny"])


def test_every_tensor_is_one_diffusers_tensor_but_legacy_attentions_qkv():
    """What lets a diffusers folder load tensor by tensor: each ldmkit tensor comes from one diffusers tensor
    (renamed, or a 1x1 conv reshaped), except a legacy AttentionBlock's qkv, made of to_q, to_k and to_v."""
    sd = links(UNET_PRESETS["sd-v1"])
    assert len(sd) == 686 and all(len(link.theirs) == 1 and link.to_ours is None for link in sd)
    joined = [link for link in links(CONFIGS["tiny"]) if len(link.theirs) != 1]
    assert joined and {link.ours.split(".")[-2] for link in joined} == {"qkv"}
    assert [name.split(".")[-2] for name in joined[0].theirs] == ["to_q", "to_k", "to_v"]

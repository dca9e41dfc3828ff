"""CompVis YAML -> LDMConfig: every option the released configs use, and clear errors for the rest."""

import copy
import os
from pathlib import Path

import pytest

from ldmkit.config import read_yaml
from ldmkit.errors import CheckpointError
from ldmkit.interop.compvis_config import translate

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("LDMKIT_COMPVIS_FIXTURES", REPO / ".." / "shared" / "fixtures" / "compvis"))
KL = {"target": "ldm.models.autoencoder.AutoencoderKL", "params": {"embed_dim": 4, "ddconfig": {
    "double_z": True, "z_channels": 4, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32, "ch_mult": [1, 2],
    "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}, "lossconfig": {"target": "torch.nn.Identity"}}}
UNET = {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": {
    "image_size": 16, "in_channels": 4, "out_channels": 4, "model_channels": 32, "attention_resolutions": [2],
    "num_res_blocks": 1, "channel_mult": [1, 2], "num_heads": 2, "use_checkpoint": True}}
CLASS = {"target": "ldm.modules.encoders.modules.ClassEmbedder", "params": {"n_classes": 1001, "embed_dim": 32}}


def config(**params):
    """A small LatentDiffusion config in the original layout; `params` override model.params."""
    base = {"linear_start": 0.0015, "linear_end": 0.0195, "timesteps": 1000, "image_size": 16, "channels": 4,
            "monitor": "val/loss", "first_stage_config": copy.deepcopy(KL), "unet_config": copy.deepcopy(UNET),
            "cond_stage_config": "__is_unconditional__"}
    base.update(params)
    return {"model": {"base_learning_rate": 1e-4, "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
                      "params": base}}


def fixture_config(case):
    path = FIXTURES / case / "config.yaml"
    assert path.is_file(), f"CompVis fixtures missing at {path}"
    return read_yaml(path.read_text())


def test_fixture_configs():
    cls = translate(fixture_config("kl_crossattn_class")).config
    assert cls.conditioning.kind == "class" and cls.conditioning.class_label.rows == 11
    assert cls.conditioning.class_label.null_label == 10
    assert cls.unet.use_spatial_transformer and cls.unet.num_head_channels == 16 and cls.scale_factor == 0.18215
    assert (cls.diffusion.schedule, cls.diffusion.beta_start, cls.diffusion.beta_end) == ("scaled_linear", 0.0015,
                                                                                          0.0195)
    vq = translate(fixture_config("vq_uncond_attention")).config
    assert vq.first_stage.kind == "vq" and vq.first_stage.attn_factors == (4,)  # attention at 8x8 of 32
    assert vq.first_stage.vq_restart_every == 0 and vq.conditioning.kind == "none"
    assert vq.unet.use_scale_shift_norm and vq.unet.resblock_updown and vq.image_size == 32
    sr = translate(fixture_config("kl_concat_sr")).config
    low = sr.conditioning.low_res
    assert sr.conditioning.kind == "low_res" and (low.stages, low.method, low.multiplier, low.factor) == (
        1, "bilinear", 0.5, 2)
    bert = translate(fixture_config("kl_crossattn_bert")).config
    assert bert.conditioning.text.encoder == "bert" and bert.conditioning.text.layers == 2
    assert bert.unet.legacy is False


def test_defaults_follow_latent_diffusion():
    rescaler = {"target": "ldm.modules.encoders.modules.SpatialRescaler",
                "params": {"n_stages": 2, "in_channels": 182, "out_channels": 3}}
    cfg = config(cond_stage_config=rescaler)  # no conditioning_key: concat_mode (default true) -> concat
    cfg["model"]["params"]["unet_config"]["params"]["in_channels"] = 7
    del cfg["model"]["params"]["linear_start"], cfg["model"]["params"]["linear_end"]
    out = translate(cfg).config
    assert out.conditioning.kind == "low_res" and out.conditioning.low_res.out_channels == 3
    assert out.conditioning.low_res.factor == 1  # 2 stages of x0.5 onto an f=2 latent: a full-size map
    assert (out.diffusion.beta_start, out.diffusion.beta_end) == (1e-4, 2e-2)  # DDPM's defaults
    assert out.unet.sample_size == 16 and not out.unet.use_checkpoint


def test_schedules_and_parameterizations():
    assert translate(config(beta_schedule="cosine")).config.diffusion.schedule == "cosine"
    assert translate(config(beta_schedule="sqrt_linear")).config.diffusion.schedule == "linear"
    assert translate(config(parameterization="v")).config.diffusion.prediction == "v"
    with pytest.raises(CheckpointError, match="beta_schedule.*'sqrt'"):
        translate(config(beta_schedule="sqrt"))


def test_class_crossattn_and_hybrid():
    unet = copy.deepcopy(UNET)
    unet["params"].update(use_spatial_transformer=True, context_dim=32)
    out = translate(config(cond_stage_config=CLASS, conditioning_key="crossattn", unet_config=unet)).config
    assert out.conditioning.class_label.rows == 1001 and out.conditioning.class_label.null_label == 1000
    unet["params"]["in_channels"] = 7
    out = translate(config(cond_stage_config=CLASS, conditioning_key="hybrid", unet_config=unet)).config
    cond = out.conditioning
    assert (cond.kind, cond.hybrid, cond.low_res.channels) == ("class", "low_res", 3)


def test_first_stage_inpainting_and_identity_cond_stages():
    vq = {"target": "ldm.models.autoencoder.VQModelInterface", "params": {"embed_dim": 3, "n_embed": 64, "ddconfig": {
        **KL["params"]["ddconfig"], "double_z": False, "z_channels": 3}}}
    unet = copy.deepcopy(UNET)
    unet["params"].update(in_channels=7, out_channels=3)
    out = translate(config(first_stage_config=vq, unet_config=unet, channels=3,
                           cond_stage_config="__is_first_stage__"))
    assert out.cond_stage_is_first_stage and out.config.conditioning.kind == "inpaint"
    assert out.config.conditioning.inpaint.mask_resize == "nearest"
    unet["params"]["in_channels"] = 6  # bsr_sr: the low-res image concatenated as it is
    out = translate(config(first_stage_config=vq, unet_config=unet, channels=3,
                           cond_stage_config={"target": "torch.nn.Identity"}, conditioning_key="concat")).config
    assert out.conditioning.kind == "low_res" and out.conditioning.low_res.stages == 0


@pytest.mark.parametrize("where, value, message", [
    ("target", "ldm.models.diffusion.ddpm.DDPM", "model.target.*DDPM.*LatentDiffusion"),
    ("first_stage_config", {"target": "ldm.models.autoencoder.VQModel"}, "VQModel'.*AutoencoderKL"),
    ("cond_stage_config", {"target": "ldm.modules.encoders.modules.FrozenT5Embedder"},
     "FrozenT5Embedder.*ClassEmbedder"),
    ("unet_config", {"target": "my.UNet"}, "my.UNet"),
    ("given_betas", [0.1, 0.2], "given_betas"),
    ("mystery_option", 3, "model.params.mystery_option"),
])
def test_unknown_targets_and_keys_are_named(where, value, message):
    cfg = config()
    if where == "target":
        cfg["model"]["target"] = value
    else:
        cfg["model"]["params"][where] = value
    with pytest.raises(CheckpointError, match=message):
        translate(cfg)


def test_unsupported_unet_options_and_missing_clip_folder():
    unet = copy.deepcopy(UNET)
    unet["params"]["use_new_attention_order"] = True
    with pytest.raises(CheckpointError, match="unet_config.params.use_new_attention_order"):
        translate(config(unet_config=unet))
    unet = copy.deepcopy(UNET)
    unet["params"].update(use_spatial_transformer=True, context_dim=768)
    sd = config(cond_stage_config={"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder"},
                conditioning_key="crossattn", unet_config=unet)
    with pytest.raises(CheckpointError, match="text.encoder|text_encoder"):
        translate(sd)
    with pytest.raises(CheckpointError, match="concat needs a map"):
        translate(config(cond_stage_config=CLASS, conditioning_key="concat"))


@pytest.mark.parametrize("preset, params", [
    ("cin256-v2", {"image_size": 64, "in_channels": 3, "out_channels": 3, "model_channels": 192,
                   "attention_resolutions": [8, 4, 2], "num_res_blocks": 2, "channel_mult": [1, 2, 3, 5],
                   "num_heads": 1, "use_spatial_transformer": True, "transformer_depth": 1, "context_dim": 512}),
    ("sd-v1", {"image_size": 64, "in_channels": 4, "out_channels": 4, "model_channels": 320,
               "attention_resolutions": [4, 2, 1], "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "num_heads": 8,
               "use_spatial_transformer": True, "transformer_depth": 1, "context_dim": 768, "use_checkpoint": True,
               "legacy": False}),
])
def test_released_unet_configs_equal_the_presets(preset, params):
    from ldmkit.interop.compvis_config import unet_config
    from ldmkit.unet.presets import UNET_PRESETS

    target = "ldm.modules.diffusionmodules.openaimodel.UNetModel"
    assert unet_config({"target": target, "params": params}) == UNET_PRESETS[preset]


def test_an_unreadable_original_yaml_is_named_in_one_line(tmp_path):
    from ldmkit.interop.compvis import read_config

    (tmp_path / "tab.yaml").write_text("model:\n\ttarget: x\n")
    (tmp_path / "utf16.yaml").write_bytes("model: {}\n".encode("utf-16"))
    for name, problem in (("tab.yaml", "line 2, column 1: found character '\\t'"), ("utf16.yaml", "not UTF-8 text")):
        with pytest.raises(CheckpointError) as err:
            read_config(tmp_path / name)
        assert "\n" not in str(err.value) and problem in str(err.value)
        assert str(err.value).endswith("give the model's original YAML (e.g. v1-inference.yaml)")

"""A CompVis latent-diffusion YAML config -> the LDMConfig of the same model.

The original config names classes by import string (`target:`); here each supported target is a
row in a table that says which ldmkit kind it is, and nothing is imported. Keys that only matter
for training (losses, monitors, learning rates, ...) are ignored; a key or target that would
change what the model computes and that ldmkit does not implement is a CheckpointError naming it.

Covered: LatentDiffusion with AutoencoderKL, VQModelInterface or IdentityFirstStage; the
openaimodel UNetModel (legacy attention or SpatialTransformer); conditioning_key crossattn,
concat, hybrid or none; cond stages ClassEmbedder, BERTEmbedder, FrozenCLIPEmbedder (with a
local CLIP folder), SpatialRescaler, torch.nn.Identity, __is_first_stage__ (the paper's
inpainting model) and __is_unconditional__; beta_schedule linear / sqrt_linear / cosine and
parameterization eps / x0 / v.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.conditioning import ConditioningConfig
from ldmkit.conditioning.sections import ClassConfig, InpaintConfig, LowResConfig, TextConfig
from ldmkit.diffusion.schedule import PREDICTIONS, DiffusionConfig
from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.pipeline.model import LDMConfig
from ldmkit.unet.config import UNetConfig

MODEL_TARGETS = ("ldm.models.diffusion.ddpm.LatentDiffusion",)
FIRST_STAGES = {"ldm.models.autoencoder.AutoencoderKL": "kl", "ldm.models.autoencoder.VQModelInterface": "vq",
                "ldm.models.autoencoder.IdentityFirstStage": "identity"}
UNET_TARGETS = ("ldm.modules.diffusionmodules.openaimodel.UNetModel",)
CLASS, BERT, CLIP = ("ldm.modules.encoders.modules.ClassEmbedder", "ldm.modules.encoders.modules.BERTEmbedder",
                     "ldm.modules.encoders.modules.FrozenCLIPEmbedder")
RESCALER, IDENTITY = "ldm.modules.encoders.modules.SpatialRescaler", "torch.nn.Identity"
COND_STAGES = (CLASS, BERT, CLIP, RESCALER, IDENTITY, "__is_first_stage__", "__is_unconditional__")
SCHEDULES = {"linear": "scaled_linear", "sqrt_linear": "linear", "cosine": "cosine"}  # CompVis -> ldmkit names

# model.params keys that only matter for training or logging
TRAINING_KEYS = {
    "loss_type", "ckpt_path", "ignore_keys", "load_only_unet", "monitor", "first_stage_key", "log_every_t",
    "clip_denoised", "original_elbo_weight", "v_posterior", "l_simple_weight", "scheduler_config", "learn_logvar",
    "logvar_init", "num_timesteps_cond", "cond_stage_key", "cond_stage_trainable", "scale_by_std", "use_ema",
    "make_it_fit", "reset_ema", "reset_num_ema_updates", "ucg_training", "base_learning_rate", "lossconfig",
}
UNET_DEFAULTS = {"dropout": 0.0, "channel_mult": (1, 2, 4, 8), "conv_resample": True, "num_heads": -1,
                 "num_head_channels": -1, "num_heads_upsample": -1, "use_scale_shift_norm": False,
                 "resblock_updown": False, "use_spatial_transformer": False, "transformer_depth": 1,
                 "context_dim": None, "legacy": True, "use_linear_in_transformer": False}
UNET_UNSUPPORTED = {"dims": 2, "num_classes": None, "n_embed": None, "use_new_attention_order": False,
                    "disable_self_attentions": None, "num_attention_blocks": None, "disable_middle_self_attn": False}
DDCONFIG_REQUIRED = {"resamp_with_conv": True, "give_pre_end": False, "tanh_out": False, "use_linear_attn": False,
                     "attn_type": "vanilla"}


@dataclass(frozen=True)
class Translation:
    """The LDMConfig of an original config, and what the weight mapping needs to know besides."""

    config: LDMConfig
    cond_stage_is_first_stage: bool = False  # cond_stage_model.* duplicates first_stage_model.*


def fail(where: str, message: str) -> CheckpointError:
    return CheckpointError(f"CompVis config '{where}': {message}")


def target_of(section: Any, where: str) -> tuple[str, dict]:
    if isinstance(section, str):
        return section, {}
    if not isinstance(section, dict) or "target" not in section:
        raise fail(where, f"expected a mapping with 'target' and 'params', got {section!r}")
    return section["target"], dict(section.get("params") or {})


def first_stage_config(section: Any) -> AutoencoderConfig:
    target, params = target_of(section, "first_stage_config")
    if target not in FIRST_STAGES:
        raise fail("first_stage_config.target", f"{target!r} is not supported; ldmkit reads "
                                                f"{', '.join(FIRST_STAGES)}")
    kind = FIRST_STAGES[target]
    if kind == "identity":
        return AutoencoderConfig(kind="identity")
    if params.get("remap") is not None:
        raise fail("first_stage_config.params.remap", "remapped VQ codebooks are not supported")
    dd = dict(params.get("ddconfig") or {})
    for key, value in DDCONFIG_REQUIRED.items():
        if dd.get(key, value) != value:
            raise fail(f"first_stage_config.params.ddconfig.{key}", f"only {value!r} is supported, got {dd[key]!r}")
    if dd.get("out_ch", dd.get("in_channels")) != dd.get("in_channels"):
        raise fail("first_stage_config.params.ddconfig.out_ch", "must equal in_channels")
    if bool(dd.get("double_z", True)) != (kind == "kl"):
        raise fail("first_stage_config.params.ddconfig.double_z", f"must be {kind == 'kl'} for {target}")
    ch_mult, resolution = tuple(dd["ch_mult"]), dd["resolution"]
    attn = set(dd.get("attn_resolutions") or [])  # spatial sizes -> the levels' downsampling factors
    factors = tuple(2**i for i in range(len(ch_mult)) if resolution // 2**i in attn)
    try:
        return AutoencoderConfig(kind=kind, in_channels=dd["in_channels"], ch=dd["ch"], ch_mult=ch_mult,
                                 num_res_blocks=dd["num_res_blocks"], attn_factors=factors,
                                 z_channels=dd["z_channels"], embed_dim=params["embed_dim"],
                                 n_embed=params.get("n_embed", 2), dropout=dd.get("dropout", 0.0),
                                 vq_restart_every=0)  # CompVis VQ checkpoints have no restart buffers
    except KeyError as err:
        raise fail("first_stage_config.params", f"missing key {err}") from err


def unet_config(section: Any) -> UNetConfig:
    target, params = target_of(section, "unet_config")
    if target not in UNET_TARGETS:
        raise fail("unet_config.target", f"{target!r} is not supported; ldmkit reads {', '.join(UNET_TARGETS)}")
    for key, value in UNET_UNSUPPORTED.items():
        if params.get(key, value) != value:
            raise fail(f"unet_config.params.{key}", f"only {value!r} is supported, got {params[key]!r}")
    kwargs = dict(UNET_DEFAULTS)
    ignored = set(UNET_UNSUPPORTED) | {"use_fp16", "use_checkpoint", "image_size"}
    for key, value in params.items():
        if key in ignored:
            continue
        if key not in UNetConfig.__dataclass_fields__:
            raise fail(f"unet_config.params.{key}", "is not a UNetModel option ldmkit knows")
        kwargs[key] = tuple(value) if isinstance(value, list) and key != "context_dim" else value
    if isinstance(kwargs["context_dim"], list):
        if len(set(kwargs["context_dim"])) != 1:
            raise fail("unet_config.params.context_dim", "one width for all transformers is supported")
        kwargs["context_dim"] = kwargs["context_dim"][0]
    if "image_size" in params:
        kwargs["sample_size"] = params["image_size"]
    try:
        return UNetConfig(**kwargs)
    except ConfigError as err:
        raise fail("unet_config.params", str(err)) from err


def conditioning_config(section: Any, key: str | None, latent: int, unet: UNetConfig, factor: int,
                        trainable: bool, text_encoder: str | None) -> ConditioningConfig:
    """The ConditioningConfig of a cond stage read through `conditioning_key` (None: unconditional)."""
    target, params = target_of(section, "cond_stage_config")
    if target not in COND_STAGES:
        raise fail("cond_stage_config.target", f"{target!r} is not supported; ldmkit reads {', '.join(COND_STAGES)}")
    extra = unet.in_channels - latent  # channels concatenated to z_t
    if target == "__is_unconditional__" or key is None:
        return ConditioningConfig(kind="none", drop_prob=0.0)
    if key not in ("crossattn", "concat", "hybrid"):
        raise fail("conditioning_key", f"{key!r} is not supported; use crossattn, concat, hybrid or null")
    context_kinds = {CLASS, BERT, CLIP}
    if key == "concat" and target in context_kinds:
        raise fail("conditioning_key", f"concat needs a map-producing cond stage, not {target}")
    if key in ("crossattn", "hybrid") and target not in context_kinds:
        raise fail("conditioning_key", f"{key} needs a token-producing cond stage (ClassEmbedder, BERTEmbedder, "
                                       f"FrozenCLIPEmbedder), not {target}")
    where = "cond_stage_config.params"
    if target == CLASS:
        n = params.get("n_classes", 1000)  # CompVis' unconditional class is the last row
        cfg = ConditioningConfig(kind="class", class_label=ClassConfig(
            num_classes=n, embed_dim=params.get("embed_dim", 512), null_index=n - 1))
    elif target == BERT:
        if not params.get("use_tokenizer", True) or params.get("vocab_size", 30522) != 30522:
            raise fail(f"{where}.use_tokenizer", "only BERTEmbedders over the bert-base-uncased tokenizer "
                                                 "(use_tokenizer true, vocab_size 30522) are supported")
        cfg = ConditioningConfig(kind="text", text=TextConfig(
            encoder="bert", embed_dim=params["n_embed"], layers=params["n_layer"],
            max_tokens=params.get("max_seq_len", 77)))
    elif target == CLIP:
        if text_encoder is None:
            raise CheckpointError("this is a Stable Diffusion (FrozenCLIPEmbedder) model: give a local CLIP folder "
                                  "(config.json + tokenizer files, e.g. a copy of openai/clip-vit-large-patch14) "
                                  "with --text-encoder PATH / text_encoder=PATH")
        if params.get("layer", "last") != "last":
            raise fail(f"{where}.layer", f"only 'last' is supported, got {params['layer']!r}")
        cfg = ConditioningConfig(kind="text", text=TextConfig(
            encoder="clip", embed_dim=unet.context_dim or 768, max_tokens=params.get("max_length", 77),
            weights_path=str(text_encoder)))
    elif target == "__is_first_stage__":
        if extra != latent + 1:
            raise fail("cond_stage_config", f"__is_first_stage__ is read as the paper's inpainting (encoded masked "
                                            f"image + mask: {latent + 1} channels), but the UNet takes {extra} "
                                            "extra channels")
        cfg = ConditioningConfig(kind="inpaint", inpaint=InpaintConfig(mask_resize="nearest"))
    elif target == RESCALER:
        stages, multiplier = params.get("n_stages", 1), params.get("multiplier", 0.5)
        # the training LR factor that lands on the latent's size after the rescaler
        cfg = ConditioningConfig(kind="low_res", low_res=LowResConfig(
            factor=max(1, round(factor * multiplier**stages)), channels=params.get("in_channels", 3),
            stages=stages, method=params.get("method", "bilinear"), multiplier=multiplier,
            out_channels=params.get("out_channels"), bias=params.get("bias", False)))
    else:  # torch.nn.Identity: the map is concatenated as given
        cfg = ConditioningConfig(kind="low_res", low_res=LowResConfig(factor=factor, channels=max(extra, 1)))
    if key == "hybrid":  # CompVis passes the concatenated maps in directly: a map used as given
        if extra < 1:
            raise fail("conditioning_key", "hybrid needs a UNet with more input channels than the latent has")
        cfg = replace(cfg, hybrid="low_res", low_res=LowResConfig(factor=factor, channels=extra))
    return replace(cfg, drop_prob=0.0, trainable=trainable)  # CompVis trained without dropping conditions


def translate(data: Any, text_encoder: str | None = None) -> Translation:
    """The LDMConfig (and mapping notes) of a parsed CompVis YAML config."""
    if not isinstance(data, dict) or "model" not in data:
        raise fail("model", "the file has no top-level 'model' section")
    target, p = target_of(data["model"], "model")
    if target not in MODEL_TARGETS:
        raise fail("model.target", f"{target!r} is not supported; ldmkit reads {', '.join(MODEL_TARGETS)}")
    known = TRAINING_KEYS | {"unet_config", "first_stage_config", "cond_stage_config", "timesteps", "beta_schedule",
                             "linear_start", "linear_end", "cosine_s", "given_betas", "parameterization",
                             "conditioning_key", "concat_mode", "scale_factor", "image_size", "channels",
                             "cond_stage_forward", "use_positional_encodings"}
    for key in p:
        if key not in known:
            raise fail(f"model.params.{key}", "is not a LatentDiffusion option ldmkit knows")
    for key, default in (("given_betas", None), ("cond_stage_forward", None), ("use_positional_encodings", False)):
        if p.get(key, default) != default:
            raise fail(f"model.params.{key}", f"only {default!r} is supported, got {p[key]!r}")
    schedule = p.get("beta_schedule", "linear")
    if schedule not in SCHEDULES:
        raise fail("model.params.beta_schedule", f"{schedule!r} is not supported; use {', '.join(SCHEDULES)}")
    prediction = p.get("parameterization", "eps")
    if prediction not in PREDICTIONS:
        raise fail("model.params.parameterization", f"{prediction!r} is not supported; use eps, x0 or v")
    first = first_stage_config(p["first_stage_config"])
    unet = unet_config(p["unet_config"])
    key = p.get("conditioning_key")
    if key is None:  # LatentDiffusion's own default
        key = "concat" if p.get("concat_mode", True) else "crossattn"
    if p.get("cond_stage_config") == "__is_unconditional__":
        key = None
    latent = first.latent_channels
    if first.kind == "identity":
        first = AutoencoderConfig(kind="identity", in_channels=p.get("channels", 3))
        latent = first.latent_channels
    if p.get("channels", 3) != latent:
        raise fail("model.params.channels", f"is {p.get('channels', 3)}, but the first stage has {latent} channels")
    try:
        cond = conditioning_config(p["cond_stage_config"], key, latent, unet, first.downsample_factor,
                                   bool(p.get("cond_stage_trainable", False)), text_encoder)
        diffusion = DiffusionConfig(schedule=SCHEDULES[schedule], timesteps=p.get("timesteps", 1000),
                                    beta_start=p.get("linear_start", 1e-4), beta_end=p.get("linear_end", 2e-2),
                                    cosine_s=p.get("cosine_s", 8e-3), prediction=prediction)
        config = LDMConfig(first_stage=first, unet=unet, diffusion=diffusion, conditioning=cond,
                           scale_factor=float(p.get("scale_factor", 1.0)),
                           image_size=p.get("image_size", 256) * first.downsample_factor)
    except (ConfigError, ValueError) as err:
        raise fail("model.params", str(err)) from err
    return Translation(config, cond_stage_is_first_stage=p.get("cond_stage_config") == "__is_first_stage__")

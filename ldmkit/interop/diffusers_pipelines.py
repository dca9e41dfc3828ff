"""Which diffusers pipeline runs an ldmkit LDM as ldmkit does (export), and what a pipeline implies (import).

    unconditional, latent                  LDMPipeline (first stage written as "vqvae", KL or VQ)
    unconditional, pixel space             DDIMPipeline
    low_res at the latent's size, as is    LDMSuperResolutionPipeline (it never divides by scaling_factor)
    text, encoder "clip", KL first stage   StableDiffusionPipeline (vae/, text_encoder/, tokenizer/)

Any other conditioning has no diffusers pipeline, and `pipeline_class` refuses it with the reason
(a folder diffusers cannot run is worse than none).
"""

from __future__ import annotations

import dataclasses

from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.conditioning import ConditioningConfig
from ldmkit.errors import ConfigError
from ldmkit.pipeline.model import LDMConfig


def super_resolution(stage: AutoencoderConfig, base: ConditioningConfig) -> ConditioningConfig:
    """`base` with the low_res conditioning diffusers' LDMSuperResolutionPipeline implies: the LR image
    in [-1, 1] has the latent's size and is concatenated as is (no rescaling stages, no channel mapper)."""
    low_res = dataclasses.replace(base.low_res, factor=stage.downsample_factor, channels=stage.latent_channels,
                                  stages=0, out_channels=None)
    return dataclasses.replace(base, kind="low_res", low_res=low_res)


# why diffusers has no pipeline for a conditioning kind (CLIP text and super-resolution aside)
NO_PIPELINE = {
    "class": "diffusers has no pipeline that feeds a learned class embedding to a cross-attention UNet",
    "text": "StableDiffusionPipeline runs a transformers CLIPTextModel, and ldmkit's '{encoder}' text encoder is not "
            "one (only encoder 'clip' exports)",
    "layout": "diffusers has no layout-to-image pipeline for ldmkit's box tokens",
    "semantic": "diffusers has no pipeline that concatenates a label map to the latent",
    "low_res": "LDMSuperResolutionPipeline concatenates the low-resolution image as it is, at the latent's size "
               "(scale_factor 1, latent channels = image channels, no rescaling stages), and this model does not",
    "inpaint": "diffusers has no pipeline for ldmkit's text-free inpainting condition (masked-image latent + mask)",
}


def pipeline_class(cfg: LDMConfig) -> str:
    """The diffusers pipeline that runs `cfg` as ldmkit does; a ConfigError that says why when none does."""
    cond, latent = cfg.conditioning, cfg.first_stage.kind != "identity"
    if cond.kind == "none":
        return "LDMPipeline" if latent else "DDIMPipeline"
    # LDMSuperResolutionPipeline: latent channels = image channels, and it never divides by scaling_factor
    if (cond.kind == "low_res" and latent and cfg.scale_factor == 1.0
            and cond == super_resolution(cfg.first_stage, cond)):
        return "LDMSuperResolutionPipeline"
    if cond.uses_clip:
        if cond.hybrid == "none" and cfg.first_stage.kind == "kl":
            return "StableDiffusionPipeline"
        if cond.hybrid != "none":
            why = f"StableDiffusionPipeline reads captions only, and this model also concatenates a '{cond.hybrid}' map"
        else:
            why = (f"StableDiffusionPipeline decodes with an AutoencoderKL (vae), and this model's first stage is "
                   f"'{cfg.first_stage.kind}'")
    else:
        why = NO_PIPELINE[cond.kind].format(encoder=cond.text.encoder)
        if cond.hybrid != "none":
            why += f", nor one that adds a concatenated '{cond.hybrid}' map"
    raise ConfigError(f"the '{cond.kind}' conditioner cannot be exported to diffusers: {why}; ldmkit exports "
                      "unconditional models, CLIP text-to-image models with a KL first stage, and "
                      "LDMSuperResolutionPipeline's super-resolution models")

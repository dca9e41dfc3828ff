"""diffusers pipeline folders on disk <-> ldmkit LatentDiffusion, without needing the `diffusers` package.

A pipeline folder holds `model_index.json` and one folder per component (a model or scheduler folder:
diffusers_models.py):

    model_index.json      {"_class_name": "LDMPipeline", "unet": ["diffusers", "UNet2DModel"], ...}
    unet/                 UNet2DModel or UNet2DConditionModel   (diffusers_unet.py)
    vqvae/ (or vae/)      VQModel or AutoencoderKL; absent for a pixel-space model (diffusers_autoencoder.py)
    scheduler/            any discrete-time scheduler config   (diffusers_scheduler.py)
    text_encoder/         CLIPTextModel, with tokenizer/ CLIPTokenizer: Stable Diffusion (diffusers_text.py)
    ldmkit.json           ldmkit's own LDMConfig (written by ldmkit; optional on import)

Import: text_encoder/ + tokenizer/ (`StableDiffusionPipeline.save_pretrained`) make a text-to-image
model with ldmkit's frozen "clip" text conditioner over those two folders; without them the model
is unconditional (or LDMSuperResolutionPipeline's), unless `conditioning` is given. A
safety_checker and feature_extractor are ignored (no part in generating an image); any other
component is an error that names it. The image size is the UNet's sample_size times the first
stage's factor. Each component's weights are read tensor by tensor into the model's own tensors.
Export: the diffusers pipeline that runs the model as ldmkit does (diffusers_pipelines.py), whose
`from_pretrained(folder)` then samples the same images; a model no pipeline runs is refused.
`ldmkit.json` keeps what diffusers has no field for (conditioning settings, image size,
training-only settings); on import it must agree with the diffusers configs beside it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import torch

from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.conditioning import ConditioningConfig
from ldmkit.config import from_dict, to_dict
from ldmkit.diffusion.schedule import DiffusionConfig
from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.interop import diffusers_autoencoder as ae
from ldmkit.interop import diffusers_text, diffusers_unet
from ldmkit.interop.diffusers_models import (
    CONFIG,
    diffusers_version,
    load_scheduler_folder,
    load_weights,
    model_folder,
    save_autoencoder_folder,
    save_scheduler_folder,
    save_unet_folder,
    write_json,
)
from ldmkit.interop.diffusers_pipelines import pipeline_class, super_resolution
from ldmkit.interop.diffusers_scheduler import training_equivalent
from ldmkit.interop.tensor_files import read_json
from ldmkit.pipeline.checkpoint import empty_ldm
from ldmkit.pipeline.model import LatentDiffusion, LDMConfig
from ldmkit.version import __version__

INDEX = "model_index.json"
LDMKIT_CONFIG = "ldmkit.json"
FIRST_STAGE_NAMES = ("vqvae", "vae")
IGNORED_COMPONENTS = ("safety_checker", "feature_extractor")  # no part in generating an image


# ---- pipeline folders <-> LatentDiffusion ------------------------------------------------------

def save_diffusers_folder(model: LatentDiffusion, out: str | Path, overwrite: bool = False) -> Path:
    """Write `model` as a diffusers pipeline folder (see the module docstring); returns the folder."""
    cfg, out = model.config, Path(out)
    pipeline = pipeline_class(cfg)
    if cfg.first_stage.kind == "identity" and cfg.scale_factor != 1.0:
        raise ConfigError(f"a pixel-space model with scale_factor {cfg.scale_factor}: diffusers' DDIMPipeline "
                          "does not scale its samples; only scale_factor 1 exports")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise CheckpointError(f"{out} exists and is not empty; choose another folder or pass overwrite")
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_pipeline(model, pipeline, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _write_pipeline(model: LatentDiffusion, pipeline: str, out: Path) -> None:
    cfg = model.config
    index = {"_class_name": pipeline, "_diffusers_version": diffusers_version()}
    save_unet_folder(model.unet, out / "unet", sample_size=cfg.image_size // model.factor)
    index["unet"] = ["diffusers", diffusers_unet.diffusers_config(cfg.unet)[0]]
    if cfg.first_stage.kind != "identity":
        stage = "vae" if pipeline == "StableDiffusionPipeline" else "vqvae"
        save_autoencoder_folder(model.first_stage, out / stage, cfg.scale_factor, cfg.image_size)
        index[stage] = ["diffusers", ae.CLASSES[cfg.first_stage.kind]]
    save_scheduler_folder(cfg.diffusion, out / "scheduler")
    index["scheduler"] = ["diffusers", "DDIMScheduler"]
    if pipeline == "StableDiffusionPipeline":
        diffusers_text.save_text_components(model.conditioner, cfg.conditioning.text, out)
        index.update(text_encoder=["transformers", "CLIPTextModel"], tokenizer=["transformers", "CLIPTokenizer"],
                     safety_checker=[None, None], feature_extractor=[None, None], image_encoder=[None, None],
                     requires_safety_checker=False)
        # ldmkit.json describes this folder: its text paths are read as the folder's own on import
        text = dataclasses.replace(cfg.conditioning.text, weights_path="text_encoder", vocab_path="tokenizer")
        cfg = dataclasses.replace(cfg, conditioning=dataclasses.replace(cfg.conditioning, text=text))
    write_json(out / INDEX, index)
    write_json(out / LDMKIT_CONFIG, {"ldmkit_version": __version__, "config": to_dict(cfg)})


def _first_stage_folder(path: Path, index: dict) -> Path | None:
    names = [n for n in FIRST_STAGE_NAMES if index.get(n) and index[n][0] is not None]
    if len(names) > 1:
        raise CheckpointError(f"{path} has both {' and '.join(names)}; an LDM has one first stage")
    return path / names[0] if names else None


def _unet_settings(cfg) -> dict:
    return {k: v for k, v in diffusers_unet.diffusers_config(cfg)[1].items() if k != "sample_size"}


def _clip_text(cfg: LDMConfig) -> tuple | None:
    """What a CLIP text conditioning takes from the folder's text_encoder/ and tokenizer/ (None: no CLIP)."""
    cond = cfg.conditioning
    return (cond.text.embed_dim, cond.text.max_tokens, cond.hybrid) if cond.uses_clip else None


def _check_saved(path: Path, saved: LDMConfig, read: LDMConfig) -> None:
    """ldmkit.json must describe the diffusers components beside it."""
    problems = []
    if _unet_settings(saved.unet) != _unet_settings(read.unet):
        problems.append("unet")
    if saved.first_stage.kind != read.first_stage.kind or (
            read.first_stage.kind != "identity"
            and {k: v for k, v in ae.diffusers_config(saved.first_stage)[1].items() if k != "sample_size"}
            != {k: v for k, v in ae.diffusers_config(read.first_stage)[1].items() if k != "sample_size"}):
        problems.append("first stage")
    if saved.scale_factor != read.scale_factor:
        problems.append(f"scale_factor ({saved.scale_factor} vs scaling_factor {read.scale_factor})")
    if not training_equivalent(saved.diffusion, read.diffusion):
        problems.append("scheduler")
    if _clip_text(saved) != _clip_text(read):
        problems.append("text encoder")
    if problems:
        raise CheckpointError(f"{path / LDMKIT_CONFIG} does not describe this folder's {', '.join(problems)} "
                              f"(were the diffusers components replaced?); delete {LDMKIT_CONFIG} to import "
                              "from the diffusers configs alone")


def _components(path: Path, index: dict) -> set[str]:
    """The folder's components (entries [library, class] that are not [null, null]); an error for any
    ldmkit cannot import."""
    components = {k for k, v in index.items()
                  if not k.startswith("_") and isinstance(v, list) and any(x is not None for x in v)}
    extra = sorted(components - {"unet", "scheduler", *FIRST_STAGE_NAMES, *diffusers_text.COMPONENTS,
                                 *IGNORED_COMPONENTS})
    if extra:
        raise CheckpointError(f"{path} has components ldmkit does not import: {', '.join(extra)}; ldmkit reads "
                              "unet, vae or vqvae, scheduler, and a CLIP text_encoder + tokenizer (and ignores "
                              f"{' and '.join(IGNORED_COMPONENTS)})")
    if "unet" not in components:
        raise CheckpointError(f"{path} has no unet component")
    return components


def _check_fit(path: Path, cfg: LDMConfig) -> None:
    """The UNet takes what the first stage and the conditioning give it."""
    latent = cfg.first_stage.latent_channels
    expected = latent + cfg.conditioning.concat_channels(latent)
    if cfg.unet.in_channels != expected:
        raise CheckpointError(f"{path}: its UNet takes {cfg.unet.in_channels} input channels, but the latent and the "
                              f"'{cfg.conditioning.kind}' condition give {expected} (an inpainting or depth-to-image "
                              "model?); ldmkit imports text-to-image, unconditional and super-resolution pipelines")
    if _clip_text(cfg) and cfg.unet.context_dim != cfg.conditioning.text.embed_dim:
        raise CheckpointError(f"{path}: its text_encoder has hidden_size {cfg.conditioning.text.embed_dim}, but its "
                              f"UNet's cross_attention_dim is {cfg.unet.context_dim}; the two must be equal")


def load_diffusers_folder(path: str | Path, conditioning: ConditioningConfig | None = None,
                          unet_dtype: torch.dtype = torch.float32) -> LatentDiffusion:
    """An ldmkit LatentDiffusion (eval mode) from a diffusers pipeline folder (see the module docstring),
    its UNet made in `unet_dtype`."""
    path = Path(path)
    if not (path / INDEX).is_file():
        single = (path / CONFIG).is_file()
        hint = " (a single model folder: use load_unet_folder / load_autoencoder_folder)" if single else ""
        raise CheckpointError(f"{path} is not a diffusers pipeline folder: it has no {INDEX}{hint}")
    index = read_json(path / INDEX)
    components = _components(path, index)
    unet_class, unet_config, unet_files = model_folder(path / "unet")
    unet_cfg = diffusers_unet.config_from_diffusers(unet_class, unet_config)
    stage_path = _first_stage_folder(path, index)
    if stage_path is None:
        stage_cfg, scale, stage_files = AutoencoderConfig(kind="identity", in_channels=unet_cfg.out_channels), 1.0, []
    else:
        stage_class, stage_config, stage_files = model_folder(stage_path)
        stage_cfg, scale = ae.config_from_diffusers(stage_class, stage_config)
    diffusion = load_scheduler_folder(path / "scheduler") if "scheduler" in components else DiffusionConfig()
    text = diffusers_text.text_conditioning(path, index)  # Stable Diffusion: CLIP text_encoder + tokenizer
    if index.get("_class_name") == "LDMSuperResolutionPipeline":
        scale = 1.0  # that pipeline ignores the first stage's scaling_factor
        conditioning = conditioning or super_resolution(stage_cfg, ConditioningConfig())
    cfg = LDMConfig(stage_cfg, unet_cfg, diffusion, conditioning or text or ConditioningConfig(), scale,
                    unet_cfg.sample_size * stage_cfg.downsample_factor)
    if (path / LDMKIT_CONFIG).is_file():
        try:
            saved = from_dict(LDMConfig, read_json(path / LDMKIT_CONFIG).get("config"))
        except ConfigError as err:
            raise CheckpointError(f"{path / LDMKIT_CONFIG} does not fit this ldmkit version: {err}") from err
        _check_saved(path, saved, cfg)
        if _clip_text(cfg):  # the text encoder and tokenizer are this folder's
            saved = dataclasses.replace(saved, conditioning=dataclasses.replace(saved.conditioning,
                                                                                text=cfg.conditioning.text))
        cfg = saved
    _check_fit(path, cfg)
    model = empty_ldm(cfg, unet_dtype)
    load_weights(model.unet, path / "unet", unet_files, diffusers_unet.links(cfg.unet))
    if stage_path is not None:
        load_weights(model.first_stage, stage_path, stage_files, ae.links(cfg.first_stage))
    if _clip_text(cfg):
        diffusers_text.load_text_encoder(model.conditioner, path / "text_encoder")
    elif model.conditioner.state_dict():
        raise CheckpointError(f"{path} holds no weights for the '{cfg.conditioning.kind}' conditioner it needs")
    return model.eval()

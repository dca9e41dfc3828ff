"""Models in another codebase's format, loaded or converted as ldmkit LatentDiffusion models.

Two formats are recognised from the path alone (anything else is left to ldmkit's own loader):

    CompVis / SD v1   a checkpoint + its YAML (`config`, or the one YAML beside it): compvis.py
    diffusers         a pipeline folder holding model_index.json: diffusers_folders.py (Stable Diffusion
                      folders included: their text_encoder/ and tokenizer/ are read as ldmkit's "clip" text
                      conditioner, which needs the optional `transformers`)

    found = load_foreign("models/ldm-celebahq", config=None)    # (LatentDiffusion, source) or None
    convert_foreign("model.ckpt", "models/cin", config="model.yaml")  # -> models/cin/model.safetensors

`ldmkit.load`, and through it every CLI command that takes a model, reads both.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ldmkit.checkpoint import MODEL_FILE, resolve_model_file, save_model_file
from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.interop.compvis import convert_compvis, find_original_pair, has_ldmkit_metadata, load_compvis
from ldmkit.interop.diffusers_folders import INDEX, load_diffusers_folder
from ldmkit.interop.diffusers_text import make_text_portable
from ldmkit.pipeline.checkpoint import KIND, ldm_config_dict, ldm_tensors
from ldmkit.pipeline.model import LatentDiffusion


def find_diffusers_pipeline(path: str | Path) -> Path | None:
    """`path` when it is a diffusers pipeline folder (it holds model_index.json), else None."""
    path = Path(path)
    return path if path.is_dir() and (path / INDEX).is_file() else None


def _check_diffusers_options(folder: Path, config, text_encoder, use_ema: bool = True) -> None:
    if not use_ema:
        raise ConfigError(f"{folder} is a diffusers pipeline folder, which holds one set of weights; --no-ema / "
                          "use_ema=False chooses between the raw and EMA weights of ldmkit and CompVis files: drop it")
    if config is not None:
        raise ConfigError(f"{folder} is a diffusers pipeline folder, which carries its own configs; --config / "
                          "config= is for the YAML of an original CompVis checkpoint: drop it")
    if text_encoder is not None:
        raise ConfigError(f"{folder} is a diffusers pipeline folder, which carries its own text encoder "
                          "(text_encoder/ and tokenizer/) when its model has one; --text-encoder / text_encoder= is "
                          "for Stable Diffusion checkpoints in the CompVis format (.ckpt + YAML): drop it")


def load_foreign(path: str | Path, config: str | Path | None = None, use_ema: bool = True,
                 text_encoder: str | Path | None = None,
                 unet_dtype: torch.dtype = torch.float32) -> tuple[LatentDiffusion, Path] | None:
    """(model in eval mode, the file or folder it came from) for a CompVis pair or a diffusers pipeline
    folder; None when `path` is an ldmkit model file, checkpoint or run folder.

    use_ema: CompVis checkpoints only (diffusers folders hold one set of weights: False is refused).
    unet_dtype: the dtype the UNet is made in and its weights read into, CompVis checkpoints' and diffusers
    folders' alike (their other parts load in float32).
    """
    folder = find_diffusers_pipeline(path)
    if folder is not None:
        _check_diffusers_options(folder, config, text_encoder, use_ema)
        return load_diffusers_folder(folder, unet_dtype=unet_dtype), folder
    pair = find_original_pair(path, config)
    if pair is None:
        return None
    return load_compvis(*pair, use_ema=use_ema, text_encoder=text_encoder, unet_dtype=unet_dtype), pair[0]


def load_any_ldm(path: str | Path, config: str | Path | None = None, use_ema: bool = True,
                 text_encoder: str | Path | None = None,
                 unet_dtype: torch.dtype = torch.float32) -> tuple[LatentDiffusion, Path]:
    """(model in eval mode, its absolute file or folder) from anything ldmkit reads: an ldmkit model file,
    checkpoint or run folder, a CompVis pair or a diffusers folder; clear errors for a LoRA adapter and for
    options that do not apply (`config` and `text_encoder` are for CompVis checkpoints). `unet_dtype`: the
    dtype the UNet is made in, whatever the format: sampling in bfloat16 then never holds a float32 UNet."""
    from ldmkit.lora.files import refuse_adapter
    from ldmkit.pipeline.checkpoint import load_ldm

    found = load_foreign(path, config, use_ema=use_ema, text_encoder=text_encoder, unet_dtype=unet_dtype)
    if found is not None:
        return found[0], Path(found[1]).resolve()
    if config is not None or text_encoder is not None:
        flag = "--config" if config is not None else "--text-encoder"
        raise ConfigError(f"{path} is an ldmkit model, which carries its own config and encoders; {flag} is for "
                          "CompVis / Stable Diffusion checkpoints (.ckpt + YAML): drop it")
    source = resolve_model_file(path)
    refuse_adapter(source, path)
    return load_ldm(source, use_ema=use_ema, unet_dtype=unet_dtype), source.resolve()


def convert_foreign(path: str | Path, out: str | Path, config: str | Path | None = None,
                    text_encoder: str | Path | None = None) -> Path:
    """Write a CompVis pair or a diffusers pipeline folder as `out/model.safetensors` (kind "ldm").

    A Stable Diffusion folder's CLIP weights go into the model file; its text encoder's config.json
    and its tokenizer files are copied to out/text_encoder/ and out/tokenizer/, which the model
    file's config names relative to its own folder: the converted folder needs neither the diffusers
    one nor its own place, and may be moved or copied whole."""
    folder = find_diffusers_pipeline(path)
    if folder is not None:
        _check_diffusers_options(folder, config, text_encoder)
        model = load_diffusers_folder(folder)
        extra = {"ldmkit.converted_from": json.dumps({"format": "diffusers", "folder": folder.resolve().name}),
                 **make_text_portable(model, Path(out))}
        target = Path(out) / MODEL_FILE
        save_model_file(target, ldm_tensors(model), KIND, ldm_config_dict(model), extra=extra)
        return target
    if not Path(path).exists():
        raise CheckpointError(f"{path} does not exist")
    pair = find_original_pair(path, config)
    if pair is None:
        what = "an ldmkit model already" if _is_ldmkit_model(Path(path)) else "not a model convert can read"
        raise CheckpointError(f"{path} is {what}; convert reads an original CompVis checkpoint (+ --config YAML) "
                              "or a diffusers pipeline folder (with model_index.json)")
    return convert_compvis(*pair, out, text_encoder=text_encoder)


def _is_ldmkit_model(path: Path) -> bool:
    """Whether `path` is an ldmkit model file, checkpoint folder or run folder."""
    try:
        file = resolve_model_file(path)
    except CheckpointError:
        return False
    return file.suffix == ".safetensors" and has_ldmkit_metadata(file)

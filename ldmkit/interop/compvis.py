"""Loading and converting CompVis latent-diffusion checkpoints (a `.ckpt` or `.safetensors` + its YAML).

    model = load_compvis("model.ckpt", "config.yaml")             # an ldmkit LatentDiffusion
    convert_compvis("model.ckpt", "config.yaml", "models/cin")     # -> models/cin/model.safetensors
`ldmkit.load` and `ldmkit sample` take the original pair directly (see `find_original_pair`).
EMA weights (`model_ema.*`) are used when present unless use_ema=False; a converted model file
keeps both sets, as ldmkit's own checkpoints do. `.ckpt` files are read with
`torch.load(weights_only=True)` only: one that needs pickled code fails with a CheckpointError
(tensor_files.py).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from ldmkit.checkpoint import MODEL_FILE, save_model_file
from ldmkit.config import read_yaml, unreadable_yaml
from ldmkit.errors import CheckpointError
from ldmkit.interop.compvis_config import Translation, translate
from ldmkit.interop.compvis_weights import MappedWeights, check_against, split_state
from ldmkit.interop.diffusers_text import make_text_portable
from ldmkit.interop.tensor_files import read_state_dict
from ldmkit.pipeline.checkpoint import KIND, ldm_config_dict, ldm_tensors
from ldmkit.pipeline.model import LatentDiffusion

WEIGHT_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth")
CONFIG_SUFFIXES = (".yaml", ".yml")


def read_config(path: str | Path, text_encoder: str | Path | None = None) -> Translation:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"config {path} does not exist")
    try:
        data = read_yaml(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable YAML config ({unreadable_yaml(err)}); give the model's "
                              "original YAML (e.g. v1-inference.yaml)") from err
    try:
        return translate(data, None if text_encoder is None else str(Path(text_encoder).resolve()))
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err


def _build(checkpoint: str | Path, config: str | Path, text_encoder) -> tuple[LatentDiffusion, MappedWeights]:
    """The model with its raw weights loaded, and the mapped tensors (EMA included)."""
    translation = read_config(config, text_encoder)
    state = read_state_dict(checkpoint)
    model = LatentDiffusion(translation.config)
    mapped = split_state(state, model, translation.cond_stage_is_first_stage, str(checkpoint))
    if mapped.scale_factor is not None:  # a checkpoint's scale_factor buffer wins over the YAML's value
        model.config = dataclasses.replace(model.config, scale_factor=mapped.scale_factor)
    check_against(model, mapped, str(checkpoint))
    model.load_state_dict(mapped.weights, strict=True)
    return model.eval(), mapped


def load_compvis(checkpoint: str | Path, config: str | Path, use_ema: bool = True,
                 text_encoder: str | Path | None = None) -> LatentDiffusion:
    """An ldmkit LatentDiffusion from a CompVis checkpoint and its YAML; the EMA UNet when present and use_ema.

    text_encoder: a local CLIP folder, needed for Stable Diffusion (FrozenCLIPEmbedder) models only.
    """
    model, mapped = _build(checkpoint, config, text_encoder)
    if use_ema and mapped.ema:
        model.load_state_dict(mapped.ema, strict=False)
    return model


def convert_compvis(checkpoint: str | Path, config: str | Path, out: str | Path,
                    text_encoder: str | Path | None = None) -> Path:
    """Write an ldmkit model folder (`out/model.safetensors`, kind "ldm", EMA kept); returns the file."""
    model, mapped = _build(checkpoint, config, text_encoder)
    target = Path(out) / MODEL_FILE
    source = {"format": "compvis", "checkpoint": Path(checkpoint).name, "config": Path(config).name}
    extra = {"ldmkit.converted_from": json.dumps(source), "ldmkit.original_config": Path(config).read_text(),
             **make_text_portable(model, Path(out))}  # (before the config is written: it changes its text paths)
    save_model_file(target, ldm_tensors(model, mapped.ema), KIND, ldm_config_dict(model), extra=extra)
    return target


def has_ldmkit_metadata(path: Path) -> bool:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return "ldmkit.kind" in (f.metadata() or {})
    except (SafetensorError, OSError) as err:  # nothing can load it, ldmkit's or CompVis' loader alike
        raise CheckpointError(f"{path} is not a readable safetensors file ({err}); re-save or re-download it") from err


def _only(paths: list[Path], what: str, folder: Path) -> Path | None:
    if len(paths) > 1:
        raise CheckpointError(f"{folder} holds several {what} ({', '.join(p.name for p in paths)}); "
                              "name the checkpoint and config explicitly")
    return paths[0] if paths else None


def find_original_pair(path: str | Path, config: str | Path | None = None) -> tuple[Path, Path] | None:
    """(checkpoint, config) when `path` (+ `config`) names an original CompVis model, None for ldmkit files.

    Accepted: a checkpoint file and `config`; a checkpoint file with exactly one YAML beside it; a
    folder with exactly one `.ckpt`/`.safetensors` and one YAML (and no ldmkit model file).
    """
    path = Path(path)
    if path.is_file():
        if config is None and (path.suffix not in WEIGHT_SUFFIXES or
                               (path.suffix == ".safetensors" and has_ldmkit_metadata(path))):
            return None
        folder = path.parent
        checkpoint = path
    elif path.is_dir():
        if (path / MODEL_FILE).is_file() and has_ldmkit_metadata(path / MODEL_FILE):
            return None
        if (path / "checkpoints").is_dir() and config is None:
            return None  # an ldmkit run folder
        folder = path
        candidates = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
        checkpoint = _only(candidates, "checkpoints", path)
        if checkpoint is None:
            if config is not None:
                raise CheckpointError(f"{path} holds no checkpoint ({', '.join(WEIGHT_SUFFIXES)})")
            return None
    else:
        return None  # the ldmkit loader reports the missing path
    if config is None:
        config = _only(sorted(p for p in folder.iterdir() if p.suffix in CONFIG_SUFFIXES), "YAML configs", folder)
        if config is None:
            raise CheckpointError(f"{checkpoint} is not an ldmkit model file; for an original CompVis checkpoint "
                                  "give its YAML config (config=... / --config), or convert it with `ldmkit convert`")
    return checkpoint, Path(config)

"""Loading and converting CompVis latent-diffusion checkpoints (a `.ckpt` or `.safetensors` + its YAML).

    model = load_compvis("model.ckpt", "config.yaml")             # an ldmkit LatentDiffusion
    convert_compvis("model.ckpt", "config.yaml", "models/cin")     # -> models/cin/model.safetensors
`ldmkit.load` and `ldmkit sample` take the original pair directly (see `find_original_pair`).
EMA weights (`model_ema.*`) are used when present unless use_ema=False; a converted model file
keeps both sets, as ldmkit's own checkpoints do. The UNet is made in `unet_dtype` and filled tensor by
tensor, only with the set of weights used: a `.safetensors` file is read one tensor at a time
(state_dicts.load_exact_from_files, after its names and shapes are checked from its header), so
loading holds the model and no second copy of it; a `.ckpt` is mapped by `torch.load(mmap=True,
weights_only=True)` (an old non-zip pickle is read whole) and its tensors copied the same way: one that
needs pickled code fails with a CheckpointError (tensor_files.py). convert_compvis reads the checkpoint
whole (it writes both sets).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors import safe_open

from ldmkit.checkpoint import MODEL_FILE, save_model_file
from ldmkit.config import read_yaml, unreadable_yaml
from ldmkit.errors import CheckpointError
from ldmkit.interop.compvis_config import Translation, translate
from ldmkit.interop.compvis_weights import SCALARS, CompVisNames, check_against, compvis_names, with_scalars
from ldmkit.interop.diffusers_text import make_text_portable
from ldmkit.interop.tensor_files import existing_checkpoint, read_state_dict
from ldmkit.pipeline.checkpoint import KIND, empty_ldm, ldm_config_dict, ldm_tensors
from ldmkit.pipeline.model import LatentDiffusion
from ldmkit.state_dicts import (
    converted_state_dict,
    load_exact,
    load_exact_from_files,
    read_headers,
    safetensors_metadata,
)

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


def _contents(checkpoint: Path, whole: bool) -> tuple[dict[str, tuple], dict[str, torch.Tensor], dict | None]:
    """(each tensor's shape, the SCALARS it holds, all its tensors): a pickle (mapped) or, when `whole`, a
    .safetensors file read whole; else only a .safetensors file's header and scalars (its tensors None)."""
    if whole or checkpoint.suffix != ".safetensors":
        state = read_state_dict(checkpoint)
        return {k: tuple(v.shape) for k, v in state.items()}, {k: state[k] for k in SCALARS if k in state}, state
    shapes = {k: shape for k, (_, shape) in read_headers([existing_checkpoint(checkpoint)]).items()}
    with safe_open(str(checkpoint), framework="pt") as f:
        return shapes, {k: f.get_tensor(k) for k in SCALARS if k in shapes}, None


def _build(checkpoint: str | Path, config: str | Path, text_encoder, use_ema: bool,
           unet_dtype: torch.dtype = torch.float32,
           whole: bool = False) -> tuple[LatentDiffusion, CompVisNames, dict[str, torch.Tensor] | None]:
    """(the model, its UNet made in `unet_dtype`, filled with the weights `use_ema` picks; where the checkpoint
    holds each of its tensors; the checkpoint's tensors if read whole, None if read tensor by tensor). Only the
    tensors used are copied into the model, each once."""
    translation = read_config(config, text_encoder)
    checkpoint = Path(checkpoint)
    shapes, scalars, state = _contents(checkpoint, whole)
    cfg = translation.config
    model = empty_ldm(cfg, unet_dtype)
    names = compvis_names(list(shapes), model, translation.cond_stage_is_first_stage, str(checkpoint))
    check_against(model, names, shapes, str(checkpoint))
    with_scalars(model, scalars, str(checkpoint))  # a checkpoint's scale_factor buffer wins over the YAML's value
    sources = names.sources(use_ema)
    used = [src.keys[0] for src in sources.values()]
    if state is None:
        load_exact_from_files(model, dict.fromkeys(used, checkpoint), sources, str(checkpoint))
    else:  # (a mapped pickle's tensors are read as they are copied)
        tensors = converted_state_dict(sources, {k: state[k] for k in used}, str(checkpoint), model)
        load_exact(model, tensors, str(checkpoint))
    return model.eval(), names, state


def load_compvis(checkpoint: str | Path, config: str | Path, use_ema: bool = True,
                 text_encoder: str | Path | None = None, unet_dtype: torch.dtype = torch.float32) -> LatentDiffusion:
    """An ldmkit LatentDiffusion from a CompVis checkpoint and its YAML; the EMA UNet when present and use_ema.

    text_encoder: a local CLIP folder, needed for Stable Diffusion (FrozenCLIPEmbedder) models only.
    unet_dtype: the dtype the UNet is made in and its weights read into (the rest stays float32).
    """
    return _build(checkpoint, config, text_encoder, use_ema, unet_dtype)[0]


def convert_compvis(checkpoint: str | Path, config: str | Path, out: str | Path,
                    text_encoder: str | Path | None = None) -> Path:
    """Write an ldmkit model folder (`out/model.safetensors`, kind "ldm", EMA kept); returns the file."""
    model, names, state = _build(checkpoint, config, text_encoder, use_ema=False, whole=True)
    ema = {name: state[key] for name, key in names.ema.items()}
    target = Path(out) / MODEL_FILE
    source = {"format": "compvis", "checkpoint": Path(checkpoint).name, "config": Path(config).name}
    extra = {"ldmkit.converted_from": json.dumps(source), "ldmkit.original_config": Path(config).read_text(),
             **make_text_portable(model, Path(out))}  # (before the config is written: it changes its text paths)
    save_model_file(target, ldm_tensors(model, ema), KIND, ldm_config_dict(model), extra=extra)
    return target


def has_ldmkit_metadata(path: Path) -> bool:
    return "ldmkit.kind" in safetensors_metadata(path)  # (unreadable: nothing can load it, ldmkit's or CompVis')


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

"""LDM model files: first stage + UNet + conditioner (+ their EMA copies) and the LDMConfig, kind "ldm".

Tensor names are the module's own state-dict names (`first_stage.*`, `unet.*`, `conditioner.*`);
EMA weights of the trained parts are stored beside them as `ema.unet.*`, `ema.conditioner.*`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ldmkit.checkpoint import load_exact, load_typed_model_file
from ldmkit.config import to_dict
from ldmkit.errors import CheckpointError
from ldmkit.pipeline.model import LatentDiffusion, LDMConfig

KIND = "ldm"
EMA_PREFIX = "ema."


def ldm_tensors(model: LatentDiffusion, ema: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Everything a model file holds; `ema` maps trainable parameter names to their EMA values."""
    tensors = dict(model.state_dict())
    for name, value in (ema or {}).items():
        tensors[EMA_PREFIX + name] = value
    return tensors


def ldm_config_dict(model: LatentDiffusion) -> dict:
    return to_dict(model.config)


def load_ldm(path: str | Path, use_ema: bool = True) -> LatentDiffusion:
    """Rebuild an LDM from an ldmkit model file / checkpoint / run folder; EMA weights by default."""
    cfg, tensors = load_typed_model_file(path, KIND, LDMConfig)
    model = LatentDiffusion(cfg)
    weights = {k: v for k, v in tensors.items() if not k.startswith(EMA_PREFIX)}
    ema = {k[len(EMA_PREFIX):]: v for k, v in tensors.items() if k.startswith(EMA_PREFIX)}
    if use_ema and ema:
        unknown = sorted(set(ema) - set(weights))
        if unknown:
            raise CheckpointError(f"{path} has EMA tensors for parameters the model lacks: {', '.join(unknown[:5])}")
        weights.update(ema)
    load_exact(model, weights, str(path))
    return model.eval()

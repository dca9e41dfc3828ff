"""LDM model files: first stage + UNet + conditioner (+ their EMA copies) and the LDMConfig, kind "ldm".

Tensor names are the module's own state-dict names (`first_stage.*`, `unet.*`, `conditioner.*`);
EMA weights of the trained parts are stored beside them as `ema.unet.*`, `ema.conditioner.*`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from ldmkit.autoencoder.model import empty_autoencoder
from ldmkit.checkpoint import read_typed_config
from ldmkit.conditioning import build_conditioner
from ldmkit.config import to_dict
from ldmkit.errors import CheckpointError
from ldmkit.pipeline.model import LatentDiffusion, LDMConfig
from ldmkit.state_dicts import Source, load_exact_from_files
from ldmkit.unet import UNet, UNetConfig

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


def load_ldm(path: str | Path, use_ema: bool = True, unet_dtype: torch.dtype = torch.float32) -> LatentDiffusion:
    """Rebuild an LDM from an ldmkit model file / checkpoint / run folder; EMA weights by default.

    The UNet is made in `unet_dtype` and its weights read into it tensor by tensor (load_exact_from_files):
    a bfloat16 UNet never exists in float32 on the way, whatever the file holds."""
    file, cfg = read_typed_config(path, KIND, LDMConfig)
    model = empty_ldm(cfg, unet_dtype)
    with safe_open(str(file), framework="pt") as f:
        keys = set(f.keys())
    weights = {k for k in keys if not k.startswith(EMA_PREFIX)}
    ema = {k[len(EMA_PREFIX):] for k in keys if k.startswith(EMA_PREFIX)}
    unknown = sorted(ema - weights)
    if use_ema and unknown:
        raise CheckpointError(f"{path} has EMA tensors for parameters the model lacks: {', '.join(unknown[:5])}")
    sources = {k: Source((EMA_PREFIX + k if use_ema and k in ema else k,)) for k in model.state_dict()}
    load_exact_from_files(model, dict.fromkeys(keys, file), sources, str(path),
                          unexpected=sorted(weights - set(sources)))
    return model.eval()


def empty_ldm(cfg: LDMConfig, unet_dtype: torch.dtype) -> LatentDiffusion:
    """The LDM of `cfg` for a loader that fills all its tensors: its UNet (in `unet_dtype`), first stage and CLIP
    text encoder allocated but not initialised."""
    return LatentDiffusion(cfg, unet=empty_unet(cfg.unet, unet_dtype), first_stage=empty_autoencoder(cfg.first_stage),
                           conditioner=build_conditioner(cfg.conditioning, empty_clip=True))


def empty_unet(cfg: UNetConfig, dtype: torch.dtype) -> UNet:
    """The UNet of `cfg` in `dtype`, its weights allocated but not initialised, for a loader to fill (it has
    parameters only, no buffers, so filling every state-dict tensor makes it whole)."""
    with torch.device("meta"):
        unet = UNet(cfg)
    return unet.to(dtype).to_empty(device="cpu")

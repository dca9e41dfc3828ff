"""Autoencoder model files: weights plus the resolved AutoencoderConfig, kind "autoencoder"."""

from __future__ import annotations

from pathlib import Path

import torch

from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.autoencoder.model import Autoencoder, empty_autoencoder
from ldmkit.checkpoint import load_typed_model_file, save_model_file
from ldmkit.config import to_dict
from ldmkit.state_dicts import load_exact

KIND = "autoencoder"


def autoencoder_state(model: Autoencoder) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, config dict) for `ldmkit.checkpoint.save_model_file` / `save_checkpoint` with kind KIND."""
    return dict(model.state_dict()), to_dict(model.config)


def save_autoencoder(path: str | Path, model: Autoencoder) -> None:
    tensors, config = autoencoder_state(model)
    save_model_file(path, tensors, KIND, config)


def load_autoencoder(path: str | Path, device: torch.device | str | None = None) -> Autoencoder:
    """Rebuild the model a file, checkpoint folder or run folder holds; in eval mode, on `device` if given."""
    cfg, tensors = load_typed_model_file(path, KIND, AutoencoderConfig)
    model = empty_autoencoder(cfg)
    load_exact(model, tensors, str(path))
    return (model if device is None else model.to(device)).eval()

"""The pipeline: the two stages and the conditioner wired into one model, and sampling with it."""

from __future__ import annotations

from pathlib import Path

import torch

from ldmkit.pipeline.checkpoint import load_ldm
from ldmkit.pipeline.generate import Pipeline, read_params, save_png
from ldmkit.pipeline.model import LatentDiffusion, LDMConfig


def load(path: str | Path, device: str = "auto", use_ema: bool = True, dtype: torch.dtype = torch.float32,
         compile: bool = False) -> Pipeline:
    """A ready-to-sample Pipeline from a model file, checkpoint folder or run folder.

    dtype=torch.bfloat16 and compile=True select the fast inference path (pipeline/fast.py)."""
    from ldmkit.checkpoint import resolve_model_file
    from ldmkit.device import pick_device

    model_file = resolve_model_file(path)
    return Pipeline(load_ldm(model_file, use_ema=use_ema), pick_device(device), source=str(model_file),
                    use_ema=use_ema, dtype=dtype, compile=compile)


__all__ = ["LDMConfig", "LatentDiffusion", "Pipeline", "load", "load_ldm", "read_params", "save_png"]

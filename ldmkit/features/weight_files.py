"""Reading third-party weight files (.pth state dicts or .safetensors) into a feature network, with clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ldmkit.errors import CheckpointError
from ldmkit.interop import tensor_files


def read_state_dict(path: str | Path, fix: str) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file or a `torch.save`d state dict (ldmkit.interop.tensor_files: no
    pickled code runs); `fix` finishes every error message: it tells the user which file to pass instead."""
    try:
        return tensor_files.read_state_dict(path)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; {fix}") from err


def load_into(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path, fix: str,
              file_key: Callable[[str], str] = lambda key: key, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Copy `state` (named as in the file) into `model`; every key must be present, with its shape.

    `file_key` maps a parameter name of `model` to its name in the file, so errors name what the
    user's file holds. File keys under `ignore_prefixes` and BN `num_batches_tracked` counters are
    optional; any other key the model does not use is an error (it means another architecture).
    """
    own = {file_key(k): (k, v) for k, v in model.state_dict().items()}
    required = {k for k in own if not k.endswith("num_batches_tracked")}
    optional = {k for k in state if k.startswith(ignore_prefixes) or k.endswith("num_batches_tracked")}
    missing = [k for k in own if k in required and k not in state]  # in the model's order: first layers first
    unexpected = [k for k in state if k not in own and k not in optional]
    if missing or unexpected:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "") if keys else "none"

        raise CheckpointError(
            f"{path} does not fit {type(model).__name__}: missing keys {show(missing)}; "
            f"unexpected keys {show(unexpected)}; {fix}"
        )
    for key in required:
        if state[key].shape != own[key][1].shape:
            raise CheckpointError(
                f"{path}: '{key}' has shape {tuple(state[key].shape)} but {type(model).__name__} needs "
                f"{tuple(own[key][1].shape)}; {fix}"
            )
    model.load_state_dict({own[k][0]: state[k] for k in required}, strict=False)  # only BN counters left out

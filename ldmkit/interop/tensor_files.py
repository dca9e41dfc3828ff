"""The tensors of a foreign checkpoint file, read without running pickled code.

    read_state_dict("model.ckpt")                          # CompVis / Lightning: its "state_dict" entry
    read_state_dict("unet/diffusion_pytorch_model.bin")     # a plain torch.save'd state dict
    read_state_dict("model.safetensors")

Pickles (`.ckpt`, `.pt`, `.pth`, `.bin`) are read with `torch.load(weights_only=True)` only: a file
that asks for any Python object besides tensors and plain containers (one that could run code
when unpickled) fails with a CheckpointError that names the object and suggests safetensors.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch

from ldmkit.errors import CheckpointError

REPLACE = "check that it is the model's weights file (not another kind of file), or download it again"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a `.safetensors` file or a (Lightning) pickle, read without running pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path} is not a readable safetensors file ({err}); {REPLACE}") from err
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # mmap needs the zip format; legacy files are read whole
            if "mmap" not in str(err):
                raise
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))  # the Python object the pickle asks for
        if found is None:
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (its pickle is damaged); "
                                  f"{REPLACE}") from err
        raise CheckpointError(
            f"{path} pickles Python objects besides tensors (e.g. {found.group(1)}), and loading those can run "
            "arbitrary code; ldmkit reads checkpoints with torch.load(weights_only=True) only. Use a .safetensors "
            "release of the model, or convert this file to .safetensors with a tool you trust.") from err
    except Exception as err:  # torch.load fails on a damaged file with many error types
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {err}); "
                              f"{REPLACE}") from err
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors (expected a 'state_dict' entry)")
    return state


def read_json(path: Path) -> dict:
    """A JSON file of a foreign model folder, with a clear error when it is missing or broken."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable JSON file ({err})") from err

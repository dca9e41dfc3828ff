"""Checkpoint files: atomic writes, safetensors weights with their config, safe training state.

A model file is a `.safetensors` whose metadata carries `ldmkit.kind` (what it holds) and
`ldmkit.config` (the resolved config as JSON), so loading never needs anything else.
A training checkpoint is a folder `step-NNNNNNNN/` with `model.safetensors` and `state.pt`
(optimizers, step, RNG states), written under a temporary name and renamed into place;
`latest` (a one-line file, also replaced atomically) names the newest complete one.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ldmkit.errors import CheckpointError

FORMAT_VERSION = "1"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
LATEST_FILE = "latest"
CHECKPOINT_DIR = "checkpoints"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_model_file(path: str | Path, tensors: dict[str, torch.Tensor], kind: str, config: dict,
                    extra: dict[str, str] | None = None) -> None:
    """Save weights with their kind and resolved config in the safetensors metadata."""
    metadata = {"ldmkit.format": FORMAT_VERSION, "ldmkit.kind": kind, "ldmkit.config": json.dumps(config)}
    metadata.update(extra or {})
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(plain, str(tmp), metadata=metadata)


def load_model_file(path: str | Path, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Return (tensors, config, metadata) from an ldmkit model file, checking its kind."""
    path = resolve_model_file(path)
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err}); re-save or re-download it") from err
    if "ldmkit.kind" not in metadata:
        raise CheckpointError(
            f"{path} has no ldmkit metadata: it was not written by ldmkit. "
            "For CompVis or diffusers checkpoints use `ldmkit convert`."
        )
    if kind is not None and metadata["ldmkit.kind"] != kind:
        raise CheckpointError(f"{path} holds a '{metadata['ldmkit.kind']}' model, but a '{kind}' model is needed here")
    return tensors, json.loads(metadata["ldmkit.config"]), metadata


def mismatch_report(missing: list[str], unexpected: list[str], wrong: list[str]) -> str:
    """'missing a, b; unexpected c; wrong shape d' (five names of each at most), '' when all match."""
    parts = []
    checks = (("missing", missing, ", "), ("unexpected", unexpected, ", "), ("wrong shape", wrong, "; "))
    for label, names, sep in checks:
        if names:
            parts.append(f"{label} {sep.join(names[:5])}{' ...' if len(names) > 5 else ''}")
    return "; ".join(parts)


def load_exact(module: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict that names every missing, unexpected or wrongly shaped tensor."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
             for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    problems = mismatch_report(missing, unexpected, wrong)
    if problems:
        raise CheckpointError(f"{source} does not match the {type(module).__name__} its config describes "
                              f"({problems}); was it saved by a different ldmkit version or edited?")
    module.load_state_dict(tensors, strict=True)


def load_typed_model_file(path: str | Path, kind: str, config_cls: type) -> tuple[Any, dict[str, torch.Tensor]]:
    """(config_cls instance, tensors) of an ldmkit model file of `kind`, with clear errors."""
    from ldmkit.config import from_dict
    from ldmkit.errors import ConfigError

    tensors, config, _ = load_model_file(path, kind=kind)
    try:
        return from_dict(config_cls, config), tensors
    except ConfigError as err:
        raise CheckpointError(f"{path}: its {kind} config does not fit this ldmkit version: {err}") from err


def resolve_model_file(path: str | Path) -> Path:
    """A model file, a checkpoint folder, or a run folder (its latest checkpoint) -> the model file."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / MODEL_FILE).is_file():
        return path / MODEL_FILE
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest / MODEL_FILE
    raise CheckpointError(f"{path} holds no {MODEL_FILE} and no {CHECKPOINT_DIR}/ with a complete checkpoint")


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    ckpt_root = Path(run_dir) / CHECKPOINT_DIR
    pointer = ckpt_root / LATEST_FILE
    if pointer.is_file():
        candidate = ckpt_root / pointer.read_text().strip()
        if (candidate / MODEL_FILE).is_file() and (candidate / STATE_FILE).is_file():
            return candidate
    complete = sorted(p for p in ckpt_root.glob("step-*") if (p / STATE_FILE).is_file() and p.suffix != ".tmp")
    return complete[-1] if complete else None


def save_checkpoint(run_dir: str | Path, step: int, tensors: dict[str, torch.Tensor], kind: str,
                    config: dict, state: dict[str, Any], keep_last: int = 2,
                    extra_metadata: dict[str, str] | None = None) -> Path:
    """Write `checkpoints/step-N/` atomically (temp folder + rename), point `latest` at it, prune old ones."""
    ckpt_root = Path(run_dir) / CHECKPOINT_DIR
    final = ckpt_root / f"step-{step:08d}"
    tmp = ckpt_root / f".step-{step:08d}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model_file(tmp / MODEL_FILE, tensors, kind, config, extra_metadata)
    save_state(tmp / STATE_FILE, state)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text_atomic(ckpt_root / LATEST_FILE, final.name + "\n")
    for old in sorted(ckpt_root.glob("step-*"))[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path) -> dict[str, Any]:
    """Load a training-state file with `weights_only=True`: tensors and plain containers only."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"{path} is not a loadable training state ({err})") from err

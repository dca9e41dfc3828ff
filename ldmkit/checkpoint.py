"""Checkpoint files: atomic writes, safetensors weights with their config, safe training state.

A model file is a `.safetensors` whose metadata carries `ldmkit.kind` (what it holds) and
`ldmkit.config` (the resolved config as JSON), so loading never needs anything else.
A training checkpoint is a folder `step-NNNNNNNN/` with `model.safetensors` and `state.pt`
(optimizers, step, RNG states), written under a temporary name and renamed into place;
`latest` (a one-line file, also replaced atomically) names the newest complete one.
A write that fails (a full disk, above all) leaves no temporary file or folder behind and raises
a CheckpointError that names the file, the reason and the fix; earlier checkpoints stay intact.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ldmkit.errors import CheckpointError
from ldmkit.state_dicts import safetensors_metadata, unreadable_file

FORMAT_VERSION = "1"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
LATEST_FILE = "latest"
CHECKPOINT_DIR = "checkpoints"
RELATIVE_PATHS = "ldmkit.relative_paths"  # metadata: dotted config keys whose paths are relative to the file's folder


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


def write_error(err: OSError, path: str | Path, fix: str) -> CheckpointError:
    """The CheckpointError for a failed write of `path`: what happened (a full disk by name), then `fix`."""
    if err.errno == errno.ENOSPC:
        return CheckpointError(f"no space left on device while writing {path}; {fix}")
    return CheckpointError(f"could not write {path} ({err.strerror or err}); {fix}")


def save_model_file(path: str | Path, tensors: dict[str, torch.Tensor], kind: str, config: dict,
                    extra: dict[str, str] | None = None) -> None:
    """Save weights with their kind and resolved config in the safetensors metadata."""
    try:
        _write_model_file(path, tensors, kind, config, extra)
    except OSError as err:
        raise write_error(err, path, "free some disk space (or choose another folder) and run the command again") \
            from err


def _write_model_file(path: str | Path, tensors: dict[str, torch.Tensor], kind: str, config: dict,
                      extra: dict[str, str] | None) -> None:
    """save_model_file's write; failures of the file system raise OSError (safetensors' included)."""
    metadata = {"ldmkit.format": FORMAT_VERSION, "ldmkit.kind": kind, "ldmkit.config": json.dumps(config)}
    metadata.update(extra or {})
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(plain, str(tmp), metadata=metadata)
        except SafetensorError as err:  # "I/O error: No space left on device (os error 28)"
            code = re.search(r"os error (\d+)", str(err))
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from err


def load_model_file(path: str | Path, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Return (tensors, config, metadata) from an ldmkit model file, checking its kind."""
    path, config, metadata = read_model_config(path, kind)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise unreadable_file(path, err) from err
    return tensors, config, metadata


def read_model_config(path: str | Path, kind: str | None = None) -> tuple[Path, dict, dict]:
    """(the model file, its config, its metadata) of an ldmkit model file, checking its kind; no tensor is read."""
    path = resolve_model_file(path)
    metadata = safetensors_metadata(path)
    if "ldmkit.kind" not in metadata:
        raise CheckpointError(
            f"{path} has no ldmkit metadata: it was not written by ldmkit. "
            "For CompVis or diffusers checkpoints use `ldmkit convert`."
        )
    if kind is not None and metadata["ldmkit.kind"] != kind:
        raise CheckpointError(f"{path} holds a '{metadata['ldmkit.kind']}' model, but a '{kind}' model is needed here")
    config = json.loads(metadata["ldmkit.config"])
    for key in json.loads(metadata.get(RELATIVE_PATHS, "[]")):  # files that travel with the model file's folder
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            node = node.get(name) or {}
        if node.get(leaf):
            node[leaf] = str(path.resolve().parent / node[leaf])
    return path, config, metadata


def load_typed_model_file(path: str | Path, kind: str, config_cls: type) -> tuple[Any, dict[str, torch.Tensor]]:
    """(config_cls instance, tensors) of an ldmkit model file of `kind`, with clear errors."""
    file, cfg = read_typed_config(path, kind, config_cls)
    return cfg, load_model_file(file, kind=kind)[0]


def read_typed_config(path: str | Path, kind: str, config_cls: type) -> tuple[Path, Any]:
    """(the model file, its config as a config_cls instance) of an ldmkit model file of `kind`; no tensor read."""
    from ldmkit.config import from_dict
    from ldmkit.errors import ConfigError

    file, config, _ = read_model_config(path, kind=kind)
    try:
        return file, from_dict(config_cls, config)
    except ConfigError as err:
        raise CheckpointError(f"{path}: its {kind} config does not fit this ldmkit version: {err}") from err


def resolve_model_file(path: str | Path) -> Path:
    """A model file, a checkpoint folder, or a run folder (its latest checkpoint) -> the model file."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; give a run folder, a checkpoint folder or a model "
                              "file")
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
    complete = sorted(p for p in ckpt_root.glob("step-*") if (p / MODEL_FILE).is_file() and (p / STATE_FILE).is_file())
    return complete[-1] if complete else None


def save_checkpoint(run_dir: str | Path, step: int, tensors: dict[str, torch.Tensor], kind: str,
                    config: dict, state: dict[str, Any], keep_last: int = 2, keep_steps: tuple[int, ...] = (),
                    extra_metadata: dict[str, str] | None = None) -> Path:
    """Write `checkpoints/step-N/` atomically (temp folder + rename), point `latest` at it, prune old ones
    (all but the last `keep_last`; the checkpoints of `keep_steps` are never pruned).

    A failed write (e.g. a full disk) removes the temporary folder and raises a CheckpointError;
    the previous checkpoint stays the latest one."""
    ckpt_root = Path(run_dir) / CHECKPOINT_DIR
    final = ckpt_root / f"step-{step:08d}"
    tmp = ckpt_root / f".step-{step:08d}.{os.getpid()}.tmp"
    previous = latest_checkpoint(run_dir)
    _remove_killed_writes(ckpt_root)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _write_model_file(tmp / MODEL_FILE, tensors, kind, config, extra_metadata)
        save_state(tmp / STATE_FILE, state)
        if final.exists():
            _discard(final)
        os.replace(tmp, final)
        write_text_atomic(ckpt_root / LATEST_FILE, final.name + "\n")
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(err, OSError):
            raise
        kept = f"{previous} is intact" if previous is not None else "no earlier checkpoint exists"
        raise write_error(err, final, f"free some disk space (or keep fewer checkpoints: train.keep_last) and "
                                      f"continue the run with --resume {run_dir} ({kept})") from err
    prunable = [p for p in sorted(ckpt_root.glob("step-*"))
                if re.fullmatch(r"step-\d+", p.name) and int(p.name[5:]) not in keep_steps]
    for old in prunable[:-keep_last] if keep_last > 0 else []:
        _discard(old)
    return final


def _discard(folder: Path) -> None:
    """Delete a checkpoint folder without ever showing it half deleted: hide it (one rename), then delete it."""
    hidden = folder.with_name(f".{folder.name}.{os.getpid()}.old.tmp")
    shutil.rmtree(hidden, ignore_errors=True)
    try:
        os.replace(folder, hidden)
    except OSError:
        hidden = folder
    shutil.rmtree(hidden, ignore_errors=True)


def _remove_killed_writes(ckpt_root: Path) -> None:
    """Delete the hidden folders (`.step-N.PID[.old].tmp`) of checkpoint writes and deletions whose process is
    gone: killed mid-way."""
    for tmp in ckpt_root.glob(".step-*.*.tmp"):
        pid = tmp.name.split(".")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it does, as another user's
        pass
    return True


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save a training state atomically; a failed write (a full disk) raises its OSError."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        out = _WriteRecorder(f)
        try:
            torch.save(state, out)
        except RuntimeError:  # torch reports a failed write as "unexpected pos ...": raise the real cause
            if out.error is None:
                raise
            raise out.error from None


class _WriteRecorder:
    """A binary file that keeps the OSError of its first failed write."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.f.flush()


def load_state(path: str | Path) -> dict[str, Any]:
    """Load a training-state file with `weights_only=True`: tensors and plain containers only."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"{path} is not a loadable training state ({err})") from err

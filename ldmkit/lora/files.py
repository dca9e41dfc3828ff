"""Adapter files on disk: finding, reading (any format) and writing them, and `PATH[:WEIGHT]` specs.

    read_adapter("runs/ft-lora", model)               # a LoRA run, checkpoint folder or file; kohya / diffusers too
    write_adapter("ft.safetensors", adapter, model, "kohya")
    apply_adapters(model, [("runs/ft-lora", 0.8), ("style.safetensors", 0.5)])
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ldmkit.checkpoint import MODEL_FILE, atomic_path, latest_checkpoint, write_error
from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.lora.adapter import KIND, Adapter, apply_adapter, save_adapter
from ldmkit.state_dicts import unreadable_file

DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"  # the file `save_lora_weights` writes into a folder
Spec = tuple[str, float]  # (adapter path, weight)


def resolve_adapter_file(path: str | Path) -> Path:
    """A LoRA file, or the folder holding it: a LoRA run (its latest checkpoint), a checkpoint folder or a
    diffusers LoRA folder (pytorch_lora_weights.safetensors)."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path}: ldmkit reads LoRA files as .safetensors only (a pickled .ckpt/.pt could "
                                  "run code); convert it to safetensors")
        return path
    if not path.exists():
        raise CheckpointError(f"LoRA {path} does not exist; check the path (an ldmkit LoRA run, checkpoint folder "
                              "or file, or a kohya / diffusers LoRA .safetensors)")
    for candidate in (path / MODEL_FILE, path / DIFFUSERS_FILE):
        if candidate.is_file():
            return candidate
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest / MODEL_FILE
    raise CheckpointError(f"{path} holds no LoRA file ({MODEL_FILE}, {DIFFUSERS_FILE}) and no complete checkpoint")


def read_lora_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str], Path]:
    """(tensors, metadata, file) of a LoRA file or folder, refusing other ldmkit models clearly."""
    file = resolve_adapter_file(path)
    try:
        tensors = load_file(str(file))
        with safe_open(str(file), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise unreadable_file(file, err) from err
    kind = metadata.get("ldmkit.kind")
    if kind is not None and kind != KIND:
        raise CheckpointError(f"{path} holds an ldmkit '{kind}' model, not a LoRA adapter; give a LoRA run or file "
                              "(a run trained with lora.rank > 0, or a kohya / diffusers LoRA .safetensors)")
    return tensors, metadata, file


def read_adapter(path: str | Path, model: nn.Module) -> Adapter:
    """The adapter at `path` (ldmkit, kohya or diffusers format), its layers named by `model`'s paths."""
    from ldmkit.interop.lora_formats import read_lora_tensors

    tensors, metadata, file = read_lora_file(path)
    if not tensors:
        raise CheckpointError(f"{file} holds no tensors; it is not a LoRA adapter")
    return read_lora_tensors(tensors, metadata, model, source=f"LoRA {path}")


def adapter_info(path: str | Path) -> dict:
    """The config an ldmkit adapter file carries (its LoRA settings, the base it was trained on); {} for others."""
    _, metadata, _ = read_lora_file(path)
    return json.loads(metadata.get("ldmkit.config", "{}")) if metadata.get("ldmkit.kind") == KIND else {}


def write_adapter(path: str | Path, adapter: Adapter, model: nn.Module, fmt: str = "ldmkit",
                  config: dict | None = None) -> Path:
    """Write `adapter` (for `model`) in format ldmkit, kohya or diffusers; returns the file written."""
    from ldmkit.interop.lora_formats import FORMATS, diffusers_tensors, kohya_tensors

    if fmt not in FORMATS:
        raise ConfigError(f"LoRA format {fmt!r} is unknown; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    if fmt == "ldmkit":
        save_adapter(path, adapter, config or {})
        return path
    tensors = kohya_tensors(adapter, model) if fmt == "kohya" else diffusers_tensors(adapter, model)
    _save_foreign(path, tensors)
    return path


def _save_foreign(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """A plain safetensors file (no ldmkit metadata: other tools read it as their own), written atomically."""
    try:
        with atomic_path(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                      metadata={"format": "pt"})
    except OSError as err:
        raise write_error(err, path, "free some disk space (or choose another --out) and run the command again") \
            from err


def refuse_adapter(model_file: Path, given: str | Path | None = None) -> None:
    """A clear error when a model path (e.g. `ldmkit sample RUN`) is an ldmkit LoRA adapter, not a model."""
    try:
        with safe_open(str(model_file), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError):
        return  # not readable: the model loader says why
    if metadata.get("ldmkit.kind") == KIND:
        base = json.loads(metadata.get("ldmkit.config", "{}")).get("base", {}).get("model") or "BASE"
        raise CheckpointError(f"{model_file} is a LoRA adapter, not a model; apply it to its base model "
                              f"(ldmkit sample {base} --lora {given or model_file}; Python: ldmkit.load(base, "
                              f"lora=[path])) or merge it into the base first (ldmkit merge-lora {base} "
                              f"{given or model_file} --out DIR)")


def parse_spec(text: str) -> Spec:
    """'PATH[:WEIGHT]' -> (PATH, WEIGHT), weight 1 by default (a PATH that exists as given wins)."""
    path, sep, weight = text.rpartition(":")
    if not sep or Path(text).exists():
        return text, 1.0
    try:
        value = float(weight)
    except ValueError:
        if Path(path).exists():  # "runs/ft-lora:abc": the path is there, the weight is not a number
            raise ConfigError(f"--lora {text!r}: the weight {weight!r} is not a number; give e.g. {path}:0.8")
        return text, 1.0
    if not math.isfinite(value):
        raise ConfigError(f"--lora {text!r}: the weight must be a finite number, e.g. {path}:0.8")
    if not path:
        raise ConfigError(f"--lora {text!r}: give a LoRA path before the weight, e.g. runs/ft-lora:{weight}")
    return path, value


def as_specs(lora: Iterable[str | Path | Sequence] | str | Path | None) -> list[Spec]:
    """The Python API's `lora=` (a path, or a list of paths and (path, weight) pairs) as specs."""
    if lora is None:
        return []
    if isinstance(lora, (str, Path)):
        lora = [lora]
    specs = []
    for item in lora:
        if isinstance(item, (str, Path)):
            specs.append((str(item), 1.0))
        elif isinstance(item, Sequence) and len(item) == 2:
            specs.append((str(item[0]), float(item[1])))
        else:
            raise ConfigError(f"lora= takes paths or (path, weight) pairs, got {item!r}")
    return specs


def adapter_records(specs: Sequence[Spec]) -> list[dict]:
    """[{"file", "sha256", "weight"}] of the adapters `specs` name: what an image's parameters record."""
    from ldmkit.pipeline.metadata import file_sha256

    records = []
    for path, weight in specs:
        file = resolve_adapter_file(path).resolve()
        records.append({"file": str(file), "sha256": file_sha256(file), "weight": weight})
    return records


def apply_adapters(model: nn.Module, specs: Sequence[Spec]) -> None:
    """Read every adapter (all checked before any is applied), then merge each with its weight, in order."""
    adapters = [(read_adapter(path, model), weight, path) for path, weight in specs]
    for adapter, weight, path in adapters:
        apply_adapter(model, adapter, 0.0, source=f"LoRA {path}")  # shape checks only
    for adapter, weight, path in adapters:
        apply_adapter(model, adapter, weight, source=f"LoRA {path}")

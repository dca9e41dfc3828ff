"""Filling a module's tensors from a state dict or from safetensors files, with errors that name every tensor.

`load_exact` is load_state_dict that names every missing, unexpected or wrongly shaped tensor.
`load_exact_from_files` does the same tensor by tensor from safetensors files (one, or a sharded
model's shards), each tensor made from the files' by its `Source` (a rename, a reshape, several
tensors joined) and copied into the module's own, so loading holds the module and no second copy
of it; `converted_state_dict` makes the same tensors from a dict read whole.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ldmkit.errors import CheckpointError

READ_BUDGET = 256 * 2**20  # bytes of safetensors files mapped at once by load_exact_from_files


def unreadable_file(path: Path, err: Exception, fix: str = "re-save or re-download it") -> CheckpointError:
    """The one line for a safetensors file that cannot be opened (not one, damaged, cut short)."""
    return CheckpointError(f"{path} is not a readable safetensors file ({err}); {fix}")


def safetensors_metadata(path: Path, fix: str = "re-save or re-download it") -> dict[str, str]:
    """A safetensors file's metadata, from its header alone; the unreadable_file line when it cannot be opened."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise unreadable_file(path, err, fix) from err


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


@dataclass(frozen=True)
class Source:
    """Where one of a module's tensors comes from: the file's tensors `keys`, made into it by `make`
    (None: the one tensor as it is; a reshape, or several tensors joined into one, otherwise)."""
    keys: tuple[str, ...]
    make: Callable[..., torch.Tensor] | None = None

    def label(self, key: str, names: Iterable[str] | None = None) -> str:
        """`names` (by default all its keys) as the file names them, and the module's `key` where it differs."""
        shown = " + ".join(self.keys if names is None else names)
        return shown if self.keys == (key,) else f"{shown} (for {key})"


def _made_shape(src: Source, shapes: dict[str, tuple]) -> tuple | None:
    """The shape `src` makes from tensors of `shapes` (worked out on meta tensors), None if they do not fit."""
    if src.make is None:
        return shapes[src.keys[0]]
    try:
        return tuple(src.make(*(torch.empty(shapes[k], device="meta") for k in src.keys)).shape)
    except (RuntimeError, IndexError):  # e.g. a reshape, or an index, the file's shapes do not allow
        return None


def _source_report(sources: dict[str, Source], shapes: dict[str, tuple], unexpected: list[str],
                   targets: dict[str, tuple] | None = None) -> str:
    """mismatch_report of `sources` against the file's tensors (`shapes`) and, when given, the module's
    (`targets`: each key's shape; a key without a source is missing)."""
    missing, wrong = [], []
    for key in targets if targets is not None else sources:
        src = sources.get(key)
        absent = [key] if src is None else [k for k in src.keys if k not in shapes]
        if absent:
            missing.append(key if src is None else src.label(key, absent))
        elif targets is not None and _made_shape(src, shapes) != targets[key]:
            given = " + ".join(str(shapes[k]) for k in src.keys)
            wrong.append(f"{src.label(key)}: file {given} vs model {targets[key]}")
    return mismatch_report(sorted(missing), sorted(unexpected), wrong)


def converted_state_dict(sources: dict[str, Source], tensors: dict[str, torch.Tensor], what: str,
                         module: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """{key: its tensor made from `tensors`} for every key of `sources` (renamed, reshaped, joined): a state
    dict converted whole; a CheckpointError names every tensor missing from `tensors` or not used, and, given
    the `module` it is for, every one whose shape does not fit it."""
    used = {k for src in sources.values() for k in src.keys}
    targets = None if module is None else {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problems = _source_report(sources, {k: tuple(v.shape) for k, v in tensors.items()}, sorted(set(tensors) - used),
                              targets)
    if problems:
        raise CheckpointError(f"{what} does not fit this config ({problems})")
    return {key: src.make(*(tensors[k] for k in src.keys)) if src.make else tensors[src.keys[0]]
            for key, src in sources.items()}


def read_headers(paths: Iterable[Path], fix: str = "re-save or re-download it") -> dict[str, tuple[Path, tuple]]:
    """Each tensor's name -> (the one of the safetensors files `paths` holding it, its shape), from their headers
    alone (a sharded model's shards, or one file)."""
    found = {}
    for path in paths:
        try:
            with safe_open(str(path), framework="pt") as f:
                found.update({k: (path, tuple(f.get_slice(k).get_shape())) for k in f.keys()})
        except (SafetensorError, OSError) as err:
            raise unreadable_file(path, err, fix) from err
    return found


def safetensors_shapes(files: dict[str, Path]) -> dict[str, tuple]:
    """The shape of each tensor `files` names (name -> the safetensors file holding it), from the files' headers."""
    return {k: shape for k, (path, shape) in read_headers(dict.fromkeys(files.values())).items()
            if files.get(k) == path}


def load_exact_from_files(module: nn.Module, files: dict[str, Path], sources: dict[str, Source], source: str,
                          unexpected: Iterable[str] = (),
                          fix: str = "was it saved by a different ldmkit version or edited?") -> None:
    """`load_exact` tensor by tensor from safetensors files: `files` names the file of each of their tensors
    (one file, or a sharded model's shards), `sources` where each of the module's state-dict tensors comes
    from. Every tensor is made and copied into the module's own (so into its dtype) as it is read, and the
    files are mapped READ_BUDGET bytes at a time (a mapped file's pages count as resident until it is
    unmapped), so loading holds the module and no second copy of it. `unexpected`: the files' tensors the
    caller found no use for, named in the error."""
    expected = module.state_dict()
    shapes = safetensors_shapes(files)
    problems = _source_report(sources, shapes, list(unexpected), {k: tuple(v.shape) for k, v in expected.items()})
    if problems:
        raise CheckpointError(f"{source} does not match the {type(module).__name__} its config describes "
                              f"({problems}); {fix}")
    pending = deque(expected.items())
    with torch.no_grad():
        while pending:
            with ExitStack() as stack:
                opened, mapped = {}, 0
                while pending and mapped < READ_BUDGET:
                    key, target = pending.popleft()
                    src = sources[key]
                    read = []
                    for name in src.keys:
                        if files[name] not in opened:
                            opened[files[name]] = stack.enter_context(safe_open(str(files[name]), framework="pt"))
                        read.append(opened[files[name]].get_tensor(name))
                    target.copy_(src.make(*read) if src.make else read[0])
                    mapped += sum(t.nbytes for t in read)

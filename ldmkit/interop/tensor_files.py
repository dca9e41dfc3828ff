"""The tensors of a foreign checkpoint file, read without running pickled code.

    read_state_dict("model.ckpt")                          # CompVis / Lightning: its "state_dict" entry
    read_state_dict("unet/diffusion_pytorch_model.bin")     # a plain torch.save'd state dict
    read_state_dict("model.safetensors")

Pickles (`.ckpt`, `.pt`, `.pth`, `.bin`) are read with `torch.load(weights_only=True)` only: a file
that asks for any Python object besides tensors and plain containers (one that could run code
when unpickled) fails with a CheckpointError that names the object and suggests safetensors.

How a foreign format's tensors correspond to ldmkit's is a list of `Link`s, one per ldmkit tensor;
`link_sources` turns it into the state_dicts.Source of every tensor in either direction, which both
converts a state dict whole (state_dicts.converted_state_dict) and loads safetensors files tensor by
tensor (state_dicts.load_exact_from_files, with `safetensors_owners`: which file of a sharded model's
`weight_files` holds each tensor).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ldmkit.errors import CheckpointError
from ldmkit.state_dicts import Source, read_headers, unreadable_file

REPLACE = "check that it is the model's weights file (not another kind of file), or download it again"
VARIANT = "fp16"  # the half-precision files from_pretrained(variant="fp16") reads, diffusers' and transformers'


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a `.safetensors` file or a (Lightning) pickle, read without running pickled code."""
    path = existing_checkpoint(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise unreadable_file(path, err, REPLACE) from err
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


def existing_checkpoint(path: str | Path) -> Path:
    """`path` as a Path; a CheckpointError when no file is there."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def read_json(path: Path) -> dict:
    """A JSON file of a foreign model folder, with a clear error when it is missing or broken."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable JSON file ({err})") from err


def weight_files(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """The weights of a model that diffusers' or transformers' save_pretrained wrote to `folder` under one of
    `names` (e.g. ("model.safetensors", "pytorch_model.bin"), preferred in that order): the file itself or the
    shards its index `NAME.index.json` names; where the folder has neither, the same of the fp16 variant
    that from_pretrained(variant="fp16") downloads (`model.fp16.safetensors`, `model.safetensors.index.fp16.json`)."""
    for variant in ("", f".{VARIANT}"):
        for name in names:
            stem, ext = name.rsplit(".", 1)
            if (folder / f"{stem}{variant}.{ext}").is_file():
                return [folder / f"{stem}{variant}.{ext}"]
            if (folder / f"{name}.index{variant}.json").is_file():
                return _shards(folder / f"{name}.index{variant}.json")
    found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise CheckpointError(f"{folder} has no {' or '.join(names)} (nor their {VARIANT} variants or a sharded index "
                          f"of either); it holds {found}")


def _shards(index: Path) -> list[Path]:
    """The shards a sharded model's index names in its weight_map (tensor -> shard), each once."""
    data = read_json(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index} has no weight_map naming the shard of each tensor; download it again")
    shards = [index.parent / name for name in dict.fromkeys(weight_map.values())]
    missing = [shard.name for shard in shards if not shard.is_file()]
    if missing:
        raise CheckpointError(f"{index} names shards that are missing: {', '.join(missing)}; download them")
    return shards


def read_weights(files: list[Path]) -> dict[str, torch.Tensor]:
    """The tensors of weight files (one, or a model's shards), read whole (read_state_dict)."""
    tensors = {}
    for file in files:
        tensors.update(read_state_dict(file))
    return tensors


def safetensors_owners(files: list[Path]) -> dict[str, Path]:
    """Each tensor's name -> the one of `files` (safetensors: one file, or a sharded model's shards) holding it;
    only the files' headers are read."""
    return {k: path for k, (path, _) in read_headers(files, REPLACE).items()}


@dataclass(frozen=True)
class Link:
    """One tensor of an ldmkit state dict and the foreign tensors it corresponds to: `to_ours` makes it from
    them, `to_theirs` each of them from it (None: a rename, the one tensor as it is). No foreign tensor
    (`theirs` empty): ldmkit's starts afresh from `to_ours()` and is not exported."""
    ours: str
    theirs: tuple[str, ...]
    to_ours: Callable[..., torch.Tensor] | None = None
    to_theirs: tuple[Callable[[torch.Tensor], torch.Tensor], ...] | None = None


def module_links(keys: list[str], pairs: list[tuple[str, str, Callable[[str], Link]]]) -> list[Link]:
    """The Link of each of `keys` (an ldmkit state dict's names) made by its module's converter: `pairs` holds
    (ldmkit module prefix, foreign module prefix, converter of a name inside the module -> Link in the module)."""
    links = []
    for key in keys:
        ours, theirs, convert = next(pair for pair in pairs if key.startswith(pair[0] + "."))
        link = convert(key[len(ours) + 1:])
        links.append(Link(key, tuple(f"{theirs}.{name}" for name in link.theirs), link.to_ours, link.to_theirs))
    return links


def link_sources(links: list[Link], to_ours: bool) -> dict[str, Source]:
    """The Source of every ldmkit tensor in the foreign tensors (to_ours), or of every foreign tensor in ldmkit's."""
    if to_ours:
        return {link.ours: Source(link.theirs, link.to_ours) for link in links}
    return {name: Source((link.ours,), make) for link in links
            for name, make in zip(link.theirs, link.to_theirs or (None,) * len(link.theirs))}

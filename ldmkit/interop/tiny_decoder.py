"""Tiny decoders (ldmkit/autoencoder/tiny.py) from the files people hold, and the file ldmkit writes.

    load_tiny_decoder("taesd/")                         # a diffusers AutoencoderTiny folder (madebyollin/taesd)
    load_tiny_decoder("taesd/taesd_decoder.safetensors")  # TAESD's own decoder file (also .pth)
    load_tiny_decoder("runs/emoji/tiny-decoder.safetensors")  # ldmkit's (experiments/tiny_decoder.py)

diffusers names the decoder's layers `decoder.layers.N`; TAESD's own file numbers them from 1 (its
index 0 is the clamp, which has no weights); ldmkit's file stores them as `layers.N` with its config.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ldmkit.autoencoder.tiny import KIND, TinyDecoder, TinyDecoderConfig
from ldmkit.checkpoint import load_typed_model_file, save_model_file
from ldmkit.config import to_dict
from ldmkit.errors import CheckpointError, DataError
from ldmkit.interop.diffusers_models import CONFIG, read_model_folder
from ldmkit.interop.tensor_files import read_state_dict, weight_files
from ldmkit.state_dicts import load_exact, safetensors_metadata

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
WHAT = ("give a diffusers AutoencoderTiny folder (e.g. madebyollin/taesd), TAESD's taesd_decoder.safetensors, "
        "or an ldmkit tiny-decoder file")


def load_tiny_decoder(path: str | Path) -> TinyDecoder:
    """A TinyDecoder in eval mode, its weights from `path` (see the module docstring for the forms)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"the tiny decoder {path} does not exist; {WHAT}")
    if path.is_dir():
        if not (path / CONFIG).is_file():
            raise CheckpointError(f"the tiny decoder {path} is a folder without {CONFIG}, so not a diffusers "
                                  f"AutoencoderTiny folder; {WHAT}")
        class_name, config, tensors = read_model_folder(path)
        if class_name != "AutoencoderTiny":
            raise CheckpointError(f"{path} holds a diffusers {class_name or 'model'}, not an AutoencoderTiny; {WHAT}")
        built = {"upsampling_scaling_factor": 2, "act_fn": "relu", "upsample_fn": "nearest", "scaling_factor": 1.0,
                 "shift_factor": 0.0}  # what TinyDecoder builds and expects (diffusers' defaults)
        other = {k: config[k] for k, v in built.items() if config.get(k, v) not in (v, None)}
        if other:
            raise CheckpointError(f"{path} is an AutoencoderTiny with {other}; ldmkit's tiny decoder takes TAESD's "
                                  f"layout only ({built})")
        channels = set(config.get("decoder_block_out_channels", (64,)))
        if len(channels) != 1:
            raise CheckpointError(f"{path}: decoder_block_out_channels {sorted(channels)} differ between levels, "
                                  "which diffusers' AutoencoderTiny cannot build either")
        cfg = TinyDecoderConfig(latent_channels=config.get("latent_channels", 4), channels=channels.pop(),
                                blocks=tuple(config.get("num_decoder_blocks", (3, 3, 3, 1))))
        tensors = {k.removeprefix("decoder."): v for k, v in tensors.items() if k.startswith("decoder.")}
    elif path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise DataError(f"the tiny decoder {path} is not a weights file ({', '.join(WEIGHT_SUFFIXES)}); {WHAT}")
    elif _is_ldmkit_file(path):
        cfg, tensors = load_typed_model_file(path, KIND, TinyDecoderConfig)
    else:
        tensors = _taesd_names(read_state_dict(path), path)
        cfg = TinyDecoderConfig(latent_channels=tensors["layers.0.weight"].shape[1],
                                channels=tensors["layers.0.weight"].shape[0])
    decoder = TinyDecoder(cfg)
    load_exact(decoder, tensors, f"the tiny decoder {path}")
    return decoder.eval()


def weights_file(path: str | Path) -> Path:
    """The file holding a tiny decoder's weights: `path` itself, or a diffusers folder's weights file (its fp16
    variant, or the first shard, where that is what the folder holds; the folder itself where it holds none,
    which load_tiny_decoder refuses)."""
    path = Path(path)
    if not path.is_dir():
        return path
    from ldmkit.interop.diffusers_models import WEIGHTS, WEIGHTS_BIN

    try:
        return weight_files(path, (WEIGHTS, WEIGHTS_BIN))[0]
    except CheckpointError:
        return path


def save_tiny_decoder(decoder: TinyDecoder, path: str | Path) -> None:
    """An ldmkit tiny-decoder file: the weights with their config (atomic, as every model file)."""
    save_model_file(path, {k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}, KIND,
                    to_dict(decoder.config))


def _is_ldmkit_file(path: Path) -> bool:
    if path.suffix != ".safetensors":
        return False
    return "ldmkit.kind" in safetensors_metadata(path, WHAT)


def _taesd_names(tensors: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """TAESD's `N.rest` (N from 1) -> `layers.{N-1}.rest`; a clear error for any other file."""
    renamed = {}
    for name, tensor in tensors.items():
        match = re.fullmatch(r"(\d+)\.(.+)", name)
        if match is None or match[1] == "0":
            raise CheckpointError(f"{path} is not a TAESD decoder (it has a tensor named {name!r}); {WHAT}")
        renamed[f"layers.{int(match[1]) - 1}.{match[2]}"] = tensor
    if "layers.0.weight" not in renamed:
        raise CheckpointError(f"{path} is not a TAESD decoder (no first convolution '1.weight'); {WHAT}")
    return renamed

"""diffusers model and scheduler folders on disk <-> ldmkit UNets, autoencoders and schedules, without
needing the `diffusers` package.

A diffusers model folder holds `config.json` (the constructor's kwargs plus "_class_name") and
`diffusion_pytorch_model.safetensors` (or `.bin`, shards named by a `.safetensors.index.json`, or
the fp16 variant of either: tensor_files.weight_files); a scheduler folder holds `scheduler_config.json`.
Safetensors weights are read tensor by tensor into the model's own tensors (so into its dtype; the
correspondence of names is diffusers_unet.links / diffusers_autoencoder.links), so loading holds the
model and no second copy of it; .bin pickles are read whole. Pipeline folders, which hold one such
folder per component: diffusers_folders.py.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ldmkit.autoencoder.model import Autoencoder, empty_autoencoder
from ldmkit.diffusion.schedule import DiffusionConfig
from ldmkit.errors import CheckpointError
from ldmkit.interop import diffusers_autoencoder as ae
from ldmkit.interop import diffusers_unet
from ldmkit.interop.diffusers_scheduler import diffusion_config_from_scheduler, scheduler_config
from ldmkit.interop.tensor_files import Link, link_sources, read_json, read_weights, safetensors_owners, weight_files
from ldmkit.pipeline.checkpoint import empty_unet
from ldmkit.state_dicts import converted_state_dict, load_exact, load_exact_from_files
from ldmkit.unet.model import UNet

CONFIG = "config.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"
WEIGHTS_BIN = "diffusion_pytorch_model.bin"
SCHEDULER_CONFIG = "scheduler_config.json"
DEFAULT_DIFFUSERS_VERSION = "0.30.0"  # written when diffusers is not installed


def diffusers_version() -> str:
    """The "_diffusers_version" written: the installed diffusers', else DEFAULT_DIFFUSERS_VERSION."""
    try:
        return metadata.version("diffusers")
    except metadata.PackageNotFoundError:
        return DEFAULT_DIFFUSERS_VERSION


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_model_folder(out: str | Path, class_name: str, config: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Write a diffusers model folder: config.json and diffusion_pytorch_model.safetensors."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG, {"_class_name": class_name, "_diffusers_version": diffusers_version(), **config})
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(plain, str(out / WEIGHTS), metadata={"format": "pt"})


def model_folder(path: Path) -> tuple[str, dict, list[Path]]:
    """(class name, config, weight files) of a diffusers model folder."""
    if not (path / CONFIG).is_file():
        raise CheckpointError(f"{path} is not a diffusers model folder: it has no {CONFIG}")
    config = read_json(path / CONFIG)
    return config.get("_class_name", ""), config, weight_files(path, (WEIGHTS, WEIGHTS_BIN))


def read_model_folder(path: str | Path) -> tuple[str, dict, dict[str, torch.Tensor]]:
    """(class name, config, tensors) of a diffusers model folder, its weights read whole."""
    class_name, config, files = model_folder(Path(path))
    return class_name, config, read_weights(files)


def load_weights(module: nn.Module, path: Path, files: list[Path], links: list[Link]) -> None:
    """Fill `module` from the weight files of the diffusers model folder `path` by `links` (its tensors'
    correspondence to diffusers'): safetensors tensor by tensor into the module's own tensors (so into its
    dtype, with no second copy of the model), pickles read whole."""
    sources = link_sources(links, to_ours=True)
    if all(file.suffix == ".safetensors" for file in files):
        owners = safetensors_owners(files)
        used = {k for src in sources.values() for k in src.keys}
        load_exact_from_files(module, owners, sources, str(path), unexpected=sorted(set(owners) - used),
                              fix=f"do its weights belong to its {CONFIG}?")
    else:
        tensors = converted_state_dict(sources, read_weights(files), f"the weights in {path}", module)
        load_exact(module, tensors, str(path))


def save_unet_folder(unet: UNet, out: str | Path, sample_size: int | None = None) -> None:
    """An ldmkit UNet as a diffusers UNet2DModel / UNet2DConditionModel folder."""
    class_name, config = diffusers_unet.diffusers_config(unet.config)
    if sample_size is not None:
        config["sample_size"] = sample_size
    save_model_folder(out, class_name, config, diffusers_unet.to_diffusers_state_dict(unet.state_dict(), unet.config))


def load_unet_folder(path: str | Path, dtype: torch.dtype = torch.float32) -> UNet:
    """An ldmkit UNet (eval mode, in `dtype`) of a diffusers UNet2DModel / UNet2DConditionModel folder."""
    path = Path(path)
    class_name, config, files = model_folder(path)
    cfg = diffusers_unet.config_from_diffusers(class_name, config)
    unet = empty_unet(cfg, dtype)
    load_weights(unet, path, files, diffusers_unet.links(cfg))
    return unet.eval()


def save_autoencoder_folder(model: Autoencoder, out: str | Path, scale_factor: float = 1.0,
                            sample_size: int | None = None) -> None:
    """An ldmkit KL / VQ autoencoder as a diffusers AutoencoderKL / VQModel folder."""
    class_name, config = ae.diffusers_config(model.config, scale_factor, sample_size)
    save_model_folder(out, class_name, config, ae.to_diffusers_state_dict(model.state_dict(), model.config))


def load_autoencoder_folder(path: str | Path) -> tuple[Autoencoder, float]:
    """(autoencoder in eval mode, scaling_factor) of a diffusers AutoencoderKL / VQModel folder."""
    path = Path(path)
    class_name, config, files = model_folder(path)
    cfg, scale = ae.config_from_diffusers(class_name, config)
    model = empty_autoencoder(cfg)
    load_weights(model, path, files, ae.links(cfg))
    return model.eval(), scale


def save_scheduler_folder(cfg: DiffusionConfig, out: str | Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SCHEDULER_CONFIG, {**scheduler_config(cfg), "_diffusers_version": diffusers_version()})


def load_scheduler_folder(path: str | Path) -> DiffusionConfig:
    path = Path(path)
    if not (path / SCHEDULER_CONFIG).is_file():
        raise CheckpointError(f"{path} is not a diffusers scheduler folder: it has no {SCHEDULER_CONFIG}")
    return diffusion_config_from_scheduler(read_json(path / SCHEDULER_CONFIG))

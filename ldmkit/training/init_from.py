"""Fine-tuning: a training run that starts from a trained model (`ldmkit train CONFIG --init-from MODEL`).

MODEL is anything `ldmkit.load` reads: an ldmkit run, checkpoint folder or model file, a CompVis /
Stable Diffusion v1 checkpoint with its YAML (`init.config`), or a diffusers pipeline folder. The run
takes from it the first stage, scale_factor, UNet, diffusion process and conditioner, with their
weights (the EMA ones unless `init.use_ema: false`). The config may change what does not change the
model's maths or shapes: data, training settings, the condition's vocabulary (more classes: new rows),
and the settings in CHANGEABLE. Any other config key that is set and differs from MODEL is an error
naming it; keys the config does not set take MODEL's values.

    model = load_init_model(cfg.init)                    # once, before anything is written
    cfg = resolve_init_config(cfg, model.config, given)  # the run's full config (saved in RUN/config.yaml)
    copy_init_weights(target, model)                     # into the LatentDiffusion the run builds
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ldmkit.config import from_dict, to_dict
from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.pipeline.model import LatentDiffusion, LDMConfig
from ldmkit.state_dicts import load_exact, safetensors_metadata

IDENTITY = "identity"  # the first stage of pixel-space models
MODEL_SECTIONS = ("unet", "diffusion", "conditioning")  # taken from MODEL
# keys of those sections a fine-tuning config may change (a prefix covers the keys below it)
CHANGEABLE = ("unet.dropout", "unet.use_checkpoint", "unet.sample_size", "diffusion.min_snr_gamma",
              "diffusion.timestep_spacing", "diffusion.steps_offset", "conditioning.drop_prob",
              "conditioning.trainable", "conditioning.class_label.names", "conditioning.low_res.degradation",
              "conditioning.inpaint", "conditioning.text.vocab_path", "conditioning.text.weights_path")
GROWABLE = ("conditioning.class_label.num_classes", "conditioning.layout.num_classes")  # vocabularies: may grow


@dataclass(frozen=True)
class InitConfig:
    model: str | None = None  # start from this trained model (null: from random weights)
    config: str | None = None  # a CompVis / SD checkpoint's original YAML (null: the one YAML beside it)
    text_encoder: str | None = None  # Stable Diffusion checkpoints: a local CLIP folder
    use_ema: bool = True  # start from MODEL's EMA weights (false: its raw weights)


def load_init_model(init: InitConfig) -> LatentDiffusion:
    """The model a run starts from, on the CPU in eval mode."""
    from ldmkit.interop.foreign_models import load_any_ldm

    return load_any_ldm(init.model, init.config, init.use_ema, init.text_encoder)[0]


def model_kind(path) -> str | None:
    """The `ldmkit.kind` of a model file, from its metadata alone (None when unreadable: the loader says why)."""
    try:
        return safetensors_metadata(path).get("ldmkit.kind")
    except CheckpointError:
        return None


def given_keys(data: Any) -> set[str]:
    """The dotted keys a (YAML) mapping sets, down to its leaves: {"unet": {"dropout": 0.1}} -> {"unet.dropout"}."""
    return set(_leaves(data)) if isinstance(data, dict) else set()


def _leaves(data: dict, prefix: str = "") -> list[str]:
    """The dotted keys of a mapping's leaves, in its own order."""
    keys = []
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        keys += _leaves(value, path) if isinstance(value, dict) and value else [path]
    return keys


def _get(data: dict, key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data


def _set(data: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        data = data[part]
    data[last] = value


def resolve_init_config(cfg, source: LDMConfig, given: set[str]):
    """The run config of a run starting from a model with config `source`: MODEL's first stage, scale factor,
    UNet, diffusion and conditioning, the config's data and training settings. `given`: the keys the user's
    config sets (a set key that differs from MODEL and may not change is an error naming it)."""
    model = cfg.init.model
    ours, theirs = to_dict(cfg), {**to_dict(source), "scale_factor": source.scale_factor}
    merged = copy.deepcopy(ours)
    for section in MODEL_SECTIONS:
        merged[section] = copy.deepcopy(theirs[section])
    order = {key: i for i, key in enumerate(_leaves(ours))}  # the config's own order
    for key in sorted(given, key=lambda k: (order.get(k, len(order)), k)):
        section = key.partition(".")[0]
        if section == "scale_factor" and ours["scale_factor"] is not None and ours["scale_factor"] != \
                theirs["scale_factor"]:
            raise ConfigError(f"scale_factor is {ours['scale_factor']} in the config but {theirs['scale_factor']} "
                              f"in {model}; drop it or match it")
        if section not in MODEL_SECTIONS:
            continue
        mine, its = _get(ours, key), _get(theirs, key)
        if mine == its:
            continue
        if any(key == c or key.startswith(c + ".") for c in CHANGEABLE):
            _set(merged, key, mine)
        elif key in GROWABLE and mine > its:
            if key.startswith("conditioning.class_label") and theirs["conditioning"]["class_label"].get(
                    "injection") == "timestep":
                raise ConfigError(f"{key} grows from {its} to {mine}, but {model} adds its classes to the UNet's "
                                  "timestep embedding (class_label.injection: timestep), whose table cannot grow; "
                                  "keep its classes or train anew")
            if cfg.lora.enabled:
                raise ConfigError(f"{key} grows from {its} to {mine}, but a LoRA run keeps {model}'s conditioner "
                                  "frozen, so new classes would never be learned; train in full (lora.rank: 0)")
            _set(merged, key, mine)
            if key.startswith("conditioning.class_label") and "conditioning.class_label.names" not in given:
                merged["conditioning"]["class_label"]["names"] = []  # the data's names fill them (training)
        else:
            hint = " (it can grow: new rows are added, the old ones kept)" if key in GROWABLE else ""
            raise ConfigError(f"{key} is {mine!r} in the config but {its!r} in {model}{hint}; drop it or match it")
    merged["first_stage"] = model
    merged["scale_factor"] = source.scale_factor
    merged["center_latents"] = False  # MODEL's first stage defines the latent space, centred or not, as it is
    if "data.resolution" not in given:
        merged["data"]["resolution"] = source.image_size
    return from_dict(type(cfg), merged)


def load_first_stage(spec: str, in_channels: int = 3) -> torch.nn.Module:
    """The first stage a run config names: the identity, an autoencoder, or an LDM's own first stage."""
    from ldmkit.autoencoder.checkpoint import load_autoencoder
    from ldmkit.autoencoder.config import AutoencoderConfig
    from ldmkit.autoencoder.model import build_autoencoder
    from ldmkit.checkpoint import resolve_model_file
    from ldmkit.interop.foreign_models import find_diffusers_pipeline
    from ldmkit.pipeline.checkpoint import KIND

    if spec == IDENTITY:
        return build_autoencoder(AutoencoderConfig(kind="identity", in_channels=in_channels))
    if not Path(spec).exists():
        config = Path("configs/autoencoder") / f"{Path(spec).name}.yaml"
        make = (f"train it first (`ldmkit train-autoencoder {config}` writes {spec})" if config.is_file() else
                "train an autoencoder there first (`ldmkit train-autoencoder CONFIG --out PATH`)")
        raise CheckpointError(f"the first stage {spec} does not exist; {make}, or set first_stage to another one "
                              "(--set first_stage=PATH)")
    if find_diffusers_pipeline(spec) is None and model_kind(resolve_model_file(spec)) != KIND:
        return load_autoencoder(spec)
    return load_init_model(InitConfig(model=spec)).first_stage  # an LDM: its first stage


def check_first_stage(spec: str, source: LatentDiffusion, model: str) -> None:
    """A run from a model uses the model's first stage; a config naming another one (other weights) is an
    error. A path that does not exist (the shipped configs' default), the identity, or the autoencoder the
    model's first stage was centred from (center_latents) is not another one."""
    from ldmkit.autoencoder.recenter import is_recentred_copy

    if spec in (IDENTITY, model) or not Path(spec).exists():
        return
    named = load_first_stage(spec)
    if type(named) is not type(source.first_stage) or not is_recentred_copy(named, source.first_stage):
        raise ConfigError(f"first_stage {spec} is another autoencoder than the model's own, which a run from a model "
                          "keeps; drop first_stage from the config or --set first_stage=MODEL (the --init-from path)")


def starting_config(cls, source: LDMConfig, init: InitConfig):
    """A run config of class `cls` with no file behind it: MODEL's sections, the defaults elsewhere."""
    from ldmkit.data import DataConfig

    return cls(init=init, first_stage=init.model, scale_factor=source.scale_factor, unet=source.unet,
               diffusion=source.diffusion, conditioning=source.conditioning,
               data=DataConfig(resolution=source.image_size))


def changed_keys(cfg, default) -> set[str]:
    """The keys whose values differ from a default config: what a config built in Python sets."""
    ours, base = to_dict(cfg), to_dict(default)
    return {key for key in given_keys(ours) if _get(base, key) != _get(ours, key)}


def check_class_names(conditioning, source: LDMConfig, dataset) -> None:
    """The data's classes must fit the run's class table and extend MODEL's names index for index (labels are
    indices into the table)."""
    if conditioning.kind != "class":
        return
    ours = tuple(getattr(dataset, "class_names", ()))
    if len(ours) > conditioning.class_label.num_classes:
        raise ConfigError(f"the data has {len(ours)} classes but the model's class table has "
                          f"{conditioning.class_label.num_classes}; set conditioning.class_label.num_classes="
                          f"{len(ours)} (new rows start as the model's unconditional class)")
    theirs = source.conditioning.class_label.names
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            raise ConfigError(f"the data's class {i} is {a!r}, but the model's class {i} is {b!r}: labels are "
                              f"indices into the model's classes ({', '.join(theirs)}); give the data the same classes "
                              "in the same order (new ones after them)")


def _class_rows(old, new) -> list[int | None]:
    """For each row of the grown class table: the old row it starts from (new classes: the null row)."""
    rows: list[int | None] = []
    for i in range(new.rows):
        if i == new.null_label:
            rows.append(old.null_label)
        else:
            rows.append(i if i < old.num_classes else old.null_label)
    return rows


def _layout_rows(old, new) -> list[int | None]:
    """Token rows: padding, classes 1..C (new classes keep their fresh init), then the coordinate bins."""
    return [0, *range(1, old.num_classes + 1), *[None] * (new.num_classes - old.num_classes),
            *range(old.num_classes + 1, old.num_classes + 1 + old.coord_bins)]


def _grown(target: torch.Tensor, source: torch.Tensor, rows: list[int | None]) -> torch.Tensor:
    out = target.clone()
    for i, row in enumerate(rows):
        if row is not None:
            out[i] = source[row]
    return out


def copy_init_weights(target: LatentDiffusion, source: LatentDiffusion) -> None:
    """Load MODEL's weights into the run's model: first stage and UNet as they are, the conditioner with its
    class (or layout) table grown to the run's vocabulary."""
    name = "the model to start from"
    load_exact(target.first_stage, source.first_stage.state_dict(), name)
    load_exact(target.unet, source.unet.state_dict(), name)
    state = dict(source.conditioner.state_dict())
    old, new = source.config.conditioning, target.config.conditioning
    ours = target.conditioner.state_dict()
    if old.class_label != new.class_label and old.kind == "class":
        key = _table_key(ours, "embedding.weight")
        state[key] = _grown(ours[key], state[key], _class_rows(old.class_label, new.class_label))
    if old.layout.num_classes != new.layout.num_classes and old.kind == "layout":
        key = _table_key(ours, "token_emb.weight")
        state[key] = _grown(ours[key], state[key], _layout_rows(old.layout, new.layout))
    load_exact(target.conditioner, state, name)


def _table_key(state: dict, suffix: str) -> str:
    (key,) = [k for k in state if k == suffix or k.endswith("." + suffix)]
    return key


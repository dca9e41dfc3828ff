"""CompVis first stages as ldmkit autoencoders, for commands that work on stage 1 (`ldmkit eval-autoencoder`).

    model = load_compvis_autoencoder("model.ckpt", "config.yaml")   # an ldmkit Autoencoder, eval mode

Two original pairs are read:
    an LDM (model.target LatentDiffusion)  its `first_stage_model.*` weights and first_stage_config
    a first-stage model (model.target       its top-level weights; `loss.*` (discriminator, LPIPS) dropped;
      AutoencoderKL, VQModel or            the models/first_stage_models/* releases
      VQModelInterface)
ldmkit's VQ autoencoder quantises in decode, so a VQModel reconstructs exactly as its forward does.
The checkpoint is read with torch.load(weights_only=True) or safetensors (tensor_files.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from ldmkit.autoencoder.model import Autoencoder, build_autoencoder
from ldmkit.config import read_yaml, unreadable_yaml
from ldmkit.errors import CheckpointError
from ldmkit.interop.compvis_config import MODEL_TARGETS, first_stage_config, target_of
from ldmkit.interop.tensor_files import read_state_dict
from ldmkit.state_dicts import mismatch_report

VQ_MODEL, VQ_INTERFACE = "ldm.models.autoencoder.VQModel", "ldm.models.autoencoder.VQModelInterface"
AUTOENCODER_TARGETS = ("ldm.models.autoencoder.AutoencoderKL", VQ_MODEL, VQ_INTERFACE)
LDM_PREFIX = "first_stage_model."
DROPPED_PREFIX = "loss."  # the training loss: discriminator and LPIPS weights


def _first_stage_section(path: Path) -> tuple[dict, str]:
    """(first_stage_config-style section, weight prefix) of an original YAML."""
    try:
        data = read_yaml(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable YAML config ({unreadable_yaml(err)}); give the model's "
                              "original YAML (e.g. v1-inference.yaml)") from err
    if not isinstance(data, dict) or "model" not in data:
        raise CheckpointError(f"{path}: the file has no top-level 'model' section")
    target, params = target_of(data["model"], "model")
    if target in MODEL_TARGETS:
        if "first_stage_config" not in params:
            raise CheckpointError(f"{path}: model.params has no first_stage_config")
        return params["first_stage_config"], LDM_PREFIX
    if target in AUTOENCODER_TARGETS:  # a VQModel decodes what its encoder quantised: VQModelInterface's layout
        return {"target": VQ_INTERFACE if target == VQ_MODEL else target, "params": params}, ""
    raise CheckpointError(f"{path}: model.target {target!r} holds no first stage ldmkit reads; use an LDM config "
                          f"({', '.join(MODEL_TARGETS)}) or a first-stage config ({', '.join(AUTOENCODER_TARGETS)})")


def load_compvis_autoencoder(checkpoint: str | Path, config: str | Path) -> Autoencoder:
    """The ldmkit Autoencoder (eval mode) of an original LDM's or first-stage model's checkpoint + YAML."""
    config = Path(config)
    if not config.is_file():
        raise CheckpointError(f"config {config} does not exist")
    section, prefix = _first_stage_section(config)
    try:
        cfg = first_stage_config(section)
    except CheckpointError as err:
        raise CheckpointError(f"{config}: {err}") from err
    if cfg.kind == "identity":
        raise CheckpointError(f"{config}: the first stage is an IdentityFirstStage, which has no autoencoder")
    state = read_state_dict(checkpoint)
    weights: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(prefix) and not key[len(prefix):].startswith(DROPPED_PREFIX):
            weights[key[len(prefix):]] = value
    if prefix == "" and any(k.startswith("model_ema.") for k in weights):
        raise CheckpointError(f"{checkpoint} holds EMA weights (model_ema.*) of a first-stage model; ldmkit reads "
                              "first stages with their raw weights only: remove the model_ema.* tensors")
    model = build_autoencoder(cfg)
    expected = model.state_dict()
    wrong = [f"{prefix}{k}: checkpoint {tuple(v.shape)} vs config {tuple(expected[k].shape)}"
             for k, v in weights.items() if k in expected and v.shape != expected[k].shape]
    problems = mismatch_report([prefix + k for k in expected if k not in weights],
                               [prefix + k for k in weights if k not in expected], wrong)
    if problems:
        raise CheckpointError(f"{checkpoint} does not match the first stage {config.name} describes ({problems})")
    model.load_state_dict(weights, strict=True)
    return model.eval()

"""CompVis first stages as ldmkit autoencoders, for commands that work on stage 1 (`ldmkit eval-autoencoder`).

    model = load_compvis_autoencoder("model.ckpt", "config.yaml")   # an ldmkit Autoencoder, eval mode

Two original pairs are read:
    an LDM (model.target LatentDiffusion)  its `first_stage_model.*` weights and first_stage_config
    a first-stage model (model.target       its top-level weights; `loss.*` (discriminator, LPIPS) dropped;
      AutoencoderKL, VQModel or            the models/first_stage_models/* releases
      VQModelInterface)
ldmkit's VQ autoencoder quantises in decode, so a VQModel reconstructs exactly as its forward does.
The checkpoint is read with torch.load(weights_only=True, mapped) or, from a .safetensors file, only the
first stage's tensors, one by one into the model (state_dicts.load_exact_from_files).
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from ldmkit.autoencoder.model import Autoencoder, empty_autoencoder
from ldmkit.config import read_yaml, unreadable_yaml
from ldmkit.errors import CheckpointError
from ldmkit.interop.compvis_config import MODEL_TARGETS, first_stage_config, target_of
from ldmkit.interop.tensor_files import REPLACE, existing_checkpoint, read_state_dict
from ldmkit.state_dicts import Source, load_exact_from_files, mismatch_report, read_headers

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
    shapes, state = _first_stage_tensors(Path(checkpoint), prefix)
    if prefix == "" and any(k.startswith("model_ema.") for k in shapes):
        raise CheckpointError(f"{checkpoint} holds EMA weights (model_ema.*) of a first-stage model; ldmkit reads "
                              "first stages with their raw weights only: remove the model_ema.* tensors")
    model = empty_autoencoder(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    wrong = [f"{prefix}{k}: checkpoint {v} vs config {expected[k]}"
             for k, v in shapes.items() if k in expected and v != expected[k]]
    problems = mismatch_report([prefix + k for k in expected if k not in shapes],
                               [prefix + k for k in shapes if k not in expected], wrong)
    if problems:
        raise CheckpointError(f"{checkpoint} does not match the first stage {config.name} describes ({problems})")
    if state is None:  # a .safetensors file: tensor by tensor, the rest of an LDM's file is never read
        load_exact_from_files(model, dict.fromkeys((prefix + k for k in expected), Path(checkpoint)),
                              {k: Source((prefix + k,)) for k in expected}, str(checkpoint))
    else:
        model.load_state_dict(state, strict=True)
    return model.eval()


def _first_stage_tensors(checkpoint: Path, prefix: str) -> tuple[dict[str, tuple], dict[str, torch.Tensor] | None]:
    """(the shape of each first-stage tensor, by its name without `prefix`; those tensors, from a pickle (mapped), or
    None for a .safetensors file, whose header alone is read here). The training loss's tensors are left out."""
    def ours(key: str) -> str | None:
        name = key[len(prefix):]
        return name if key.startswith(prefix) and not name.startswith(DROPPED_PREFIX) else None

    if checkpoint.suffix == ".safetensors":
        headers = read_headers([existing_checkpoint(checkpoint)], REPLACE)
        return {ours(k): shape for k, (_, shape) in headers.items() if ours(k) is not None}, None
    state = {ours(k): v for k, v in read_state_dict(checkpoint).items() if ours(k) is not None}
    return {k: tuple(v.shape) for k, v in state.items()}, state

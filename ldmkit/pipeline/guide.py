"""The guide model of autoguidance (Karras et al., 2024): a weaker model of the same latent space.

Autoguidance (sampling/guidance.py) mixes the outputs of two UNets at the same x_t and t, so the
guide must see the same latents: the same first stage (weights included) and scale factor, the same
noise schedule and prediction, and conditions of the same kind. An early checkpoint of the same run
is the cheap choice (`train.keep_steps` keeps one); a smaller UNet trained briefly works too.
"""

from __future__ import annotations

import dataclasses

import torch

from ldmkit.errors import ConfigError
from ldmkit.pipeline.model import LatentDiffusion


def check_guide(model: LatentDiffusion, guide: LatentDiffusion, where: str) -> None:
    """A clear error naming what differs when `guide` (read from `where`) cannot guide `model`."""
    a, b = model.config, guide.config
    pairs = {
        "first_stage": (a.first_stage, b.first_stage),
        "scale_factor": (a.scale_factor, b.scale_factor),
        "diffusion.prediction": (a.diffusion.prediction, b.diffusion.prediction),
        "diffusion.timesteps": (a.diffusion.timesteps, b.diffusion.timesteps),
        "conditioning.kind": (a.conditioning.kind, b.conditioning.kind),
        "conditioning.hybrid": (a.conditioning.hybrid, b.conditioning.hybrid),
    }
    for name, (mine, theirs) in pairs.items():
        if mine != theirs:
            name, mine, theirs = _first_difference(name, mine, theirs)
            raise ConfigError(f"the guide model {where} has {name} {_short(theirs)}, the model {_short(mine)}; a "
                              "guide must share the model's latent space and conditions (an early checkpoint of "
                              "the same run, or a smaller UNet trained on the same first stage)")
    if not torch.allclose(model.schedule.alphas_cumprod, guide.schedule.alphas_cumprod):
        raise ConfigError(f"the guide model {where} has another noise schedule than the model; train it with the "
                          "model's diffusion settings")
    theirs = guide.first_stage.state_dict()
    for name, tensor in model.first_stage.state_dict().items():
        if not torch.equal(tensor.cpu(), theirs[name].cpu()):
            raise ConfigError(f"the guide model {where} has another first stage (its weights differ at {name}); "
                              "train it on the model's first stage")


def _first_difference(name: str, mine, theirs) -> tuple[str, object, object]:
    """Within configs (dataclasses), the first field that differs: ("first_stage.z_channels", 3, 4)."""
    if dataclasses.is_dataclass(mine) and type(mine) is type(theirs):
        for field in dataclasses.fields(mine):
            a, b = getattr(mine, field.name), getattr(theirs, field.name)
            if a != b:
                return _first_difference(f"{name}.{field.name}", a, b)
    return name, mine, theirs


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

"""A CompVis LatentDiffusion state dict -> the tensors of ldmkit's LatentDiffusion.

    model.diffusion_model.*   -> unet.*            (ldmkit's UNet keeps CompVis' names)
    first_stage_model.*       -> first_stage.*     (loss.* dropped)
    cond_stage_model.*        -> conditioner.*     (BERT's unused to_logits.* dropped)
    model_ema.<name without dots> -> EMA copy of unet.<name>   (decay, num_updates dropped)
    scale_factor              -> LDMConfig.scale_factor (wins over the YAML's value)
    betas, alphas_cumprod, ... -> checked against the schedule the config describes, not stored
Anything else, a missing tensor or a wrong shape is a CheckpointError naming the original key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ldmkit.errors import CheckpointError
from ldmkit.pipeline.model import LatentDiffusion
from ldmkit.state_dicts import mismatch_report

PREFIXES = {"model.diffusion_model.": "unet.", "first_stage_model.": "first_stage.",
            "cond_stage_model.": "conditioner."}
EMA_PREFIX = "model_ema."
SCHEDULE_BUFFERS = {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2"}
DROPPED = SCHEDULE_BUFFERS | {"logvar", "lvlb_weights", "model_ema.decay", "model_ema.num_updates"}
DROPPED_PREFIXES = ("first_stage_model.loss.", "cond_stage_model.transformer.to_logits.")


@dataclass
class MappedWeights:
    weights: dict[str, torch.Tensor] = field(default_factory=dict)  # ldmkit name -> tensor
    ema: dict[str, torch.Tensor] = field(default_factory=dict)  # ldmkit UNet name ("unet.*") -> EMA tensor
    origin: dict[str, str] = field(default_factory=dict)  # ldmkit name -> CompVis name
    scale_factor: float | None = None  # the checkpoint's buffer, if it has one
    alphas_cumprod: torch.Tensor | None = None


def ema_name(unet_name: str) -> str:
    """CompVis' LitEma buffer name of a UNet parameter: `model_ema.` + its name below `model` without dots."""
    return EMA_PREFIX + ("diffusion_model." + unet_name).replace(".", "")


def split_state(state: dict[str, torch.Tensor], model: LatentDiffusion, cond_stage_is_first_stage: bool,
                source: str) -> MappedWeights:
    """Sort a CompVis state dict into ldmkit weights, EMA weights and the scalars the config needs."""
    out = MappedWeights()
    unet_names = list(model.unet.state_dict())
    ema_lookup = {ema_name(n): "unet." + n for n in unet_names}
    if len(ema_lookup) != len(unet_names):
        raise CheckpointError(f"{source}: the UNet's EMA names are ambiguous once their dots are removed")
    expected = model.state_dict()
    unknown, ema_raw = [], {}
    for key, value in state.items():
        if key == "scale_factor":
            out.scale_factor = float(value)
        elif key == "alphas_cumprod":
            out.alphas_cumprod = value
        elif key in DROPPED or key.startswith(DROPPED_PREFIXES):
            continue
        elif key.startswith(EMA_PREFIX):
            ema_raw[key] = value
        elif key.startswith("cond_stage_model.") and cond_stage_is_first_stage:
            continue  # the same module as first_stage_model
        else:
            prefix = next((p for p in PREFIXES if key.startswith(p)), None)
            name = None if prefix is None else PREFIXES[prefix] + key[len(prefix):]
            if name is None or (name.endswith("position_ids") and name not in expected):
                if name is None:
                    unknown.append(key)
                continue
            out.weights[name], out.origin[name] = value, key
    if unknown:
        raise CheckpointError(f"{source} holds tensors ldmkit does not know: {', '.join(unknown[:5])}"
                              f"{' ...' if len(unknown) > 5 else ''}; a CompVis LatentDiffusion checkpoint has "
                              f"{', '.join(p + '*' for p in PREFIXES)}, {EMA_PREFIX}* and schedule buffers")
    stray = sorted(set(ema_raw) - set(ema_lookup))
    if stray:
        raise CheckpointError(f"{source} has EMA tensors for no parameter of the UNet its config describes: "
                              f"{', '.join(stray[:5])}")
    for key, value in ema_raw.items():
        out.ema[ema_lookup[key]] = value
        out.origin.setdefault(ema_lookup[key], key)
    if out.ema and len(out.ema) != len(ema_lookup):
        missing = sorted(set(ema_lookup) - set(ema_raw))
        raise CheckpointError(f"{source} has EMA weights for only part of the UNet (missing {', '.join(missing[:5])})")
    return out


def check_against(model: LatentDiffusion, mapped: MappedWeights, source: str) -> None:
    """Every tensor the model needs is there with its shape, and nothing else; errors name CompVis keys."""
    expected = model.state_dict()

    def compvis(name: str) -> str:
        if name in mapped.origin:
            return mapped.origin[name]
        prefix = next(p for p, q in PREFIXES.items() if name.startswith(q))
        return prefix + name[len(PREFIXES[prefix]):]

    missing = [compvis(n) for n in expected if n not in mapped.weights]
    unexpected = [compvis(n) for n in mapped.weights if n not in expected]
    wrong = [f"{compvis(n)}: checkpoint {tuple(v.shape)} vs config {tuple(expected[n].shape)}"
             for n, v in mapped.weights.items() if n in expected and v.shape != expected[n].shape]
    wrong += [f"{mapped.origin[n]}: checkpoint {tuple(v.shape)} vs config {tuple(expected[n].shape)}"
              for n, v in mapped.ema.items() if v.shape != expected[n].shape]
    problems = mismatch_report(missing, unexpected, wrong)
    if problems:
        raise CheckpointError(f"{source} does not match the architecture its config describes "
                              f"({problems}); is this the config the checkpoint was trained with?")
    if mapped.alphas_cumprod is not None:
        ours = model.schedule.alphas_cumprod_f32
        theirs = mapped.alphas_cumprod.float().cpu()
        if theirs.shape != ours.shape or float((theirs - ours).abs().max()) > 1e-6:
            raise CheckpointError(f"{source}: its alphas_cumprod buffer differs from the schedule the config "
                                  "describes (timesteps, linear_start, linear_end, beta_schedule); use the config "
                                  "the model was trained with")


def to_compvis(model: LatentDiffusion, ema: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The inverse mapping: an ldmkit LatentDiffusion (+ EMA of `unet.*`) as a CompVis state dict.

    Includes the schedule buffers `betas` and `alphas_cumprod` (float32), not `scale_factor`.
    """
    state = {}
    for name, value in model.state_dict().items():
        compvis, ours = next((c, o) for c, o in PREFIXES.items() if name.startswith(o))
        state[compvis + name[len(ours):]] = value
    for name, value in (ema or {}).items():
        state[ema_name(name.removeprefix("unet."))] = value
    state["betas"] = model.schedule.betas.float()
    state["alphas_cumprod"] = model.schedule.alphas_cumprod_f32
    return state

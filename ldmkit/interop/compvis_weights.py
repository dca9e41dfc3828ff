"""Where the tensors of ldmkit's LatentDiffusion are in a CompVis LatentDiffusion checkpoint.

    model.diffusion_model.*   -> unet.*            (ldmkit's UNet keeps CompVis' names)
    first_stage_model.*       -> first_stage.*     (loss.* dropped)
    cond_stage_model.*        -> conditioner.*     (BERT's unused to_logits.* dropped)
    model_ema.<name without dots> -> EMA copy of unet.<name>   (decay, num_updates dropped)
    scale_factor              -> LDMConfig.scale_factor (wins over the YAML's value)
    betas, alphas_cumprod, ... -> checked against the schedule the config describes, not stored
Anything else, a missing tensor or a wrong shape is a CheckpointError naming the original key.
`compvis_names` works from the checkpoint's names and shapes alone (a safetensors header is
enough), so a loader reads only the tensors it uses: `CompVisNames.sources` gives the
state_dicts.Source of each model tensor, raw or EMA, for load_exact_from_files or converted_state_dict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ldmkit.errors import CheckpointError
from ldmkit.pipeline.model import LatentDiffusion
from ldmkit.state_dicts import Source, mismatch_report

PREFIXES = {"model.diffusion_model.": "unet.", "first_stage_model.": "first_stage.",
            "cond_stage_model.": "conditioner."}
EMA_PREFIX = "model_ema."
SCALARS = ("scale_factor", "alphas_cumprod")  # read for the config and the schedule check, not stored
SCHEDULE_BUFFERS = {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2"}
DROPPED = SCHEDULE_BUFFERS | {"logvar", "lvlb_weights", "model_ema.decay", "model_ema.num_updates"}
DROPPED_PREFIXES = ("first_stage_model.loss.", "cond_stage_model.transformer.to_logits.")


@dataclass
class CompVisNames:
    """The checkpoint's key of each ldmkit tensor: `raw` for every model tensor it holds (and any of
    model.diffusion_model.* etc. the model lacks), `ema` for the UNet's EMA copies (empty: none)."""
    raw: dict[str, str] = field(default_factory=dict)  # ldmkit name -> CompVis key
    ema: dict[str, str] = field(default_factory=dict)  # ldmkit UNet name ("unet.*") -> its model_ema.* key

    def sources(self, use_ema: bool) -> dict[str, Source]:
        """Where each of the model's tensors is read from: the EMA copy of each UNet tensor when `use_ema` and
        the checkpoint has EMA weights, the raw one otherwise."""
        names = {**self.raw, **self.ema} if use_ema else self.raw
        return {name: Source((key,)) for name, key in names.items()}


def ema_name(unet_name: str) -> str:
    """CompVis' LitEma buffer name of a UNet parameter: `model_ema.` + its name below `model` without dots."""
    return EMA_PREFIX + ("diffusion_model." + unet_name).replace(".", "")


def compvis_names(keys: list[str], model: LatentDiffusion, cond_stage_is_first_stage: bool,
                  source: str) -> CompVisNames:
    """Sort a CompVis checkpoint's tensor names (`keys`) into raw and EMA weights of `model`; schedule buffers,
    the training loss, SCALARS and a cond_stage_model that is the first stage are left out."""
    out = CompVisNames()
    unet_names = list(model.unet.state_dict())
    ema_lookup = {ema_name(n): "unet." + n for n in unet_names}
    if len(ema_lookup) != len(unet_names):
        raise CheckpointError(f"{source}: the UNet's EMA names are ambiguous once their dots are removed")
    expected = model.state_dict()
    unknown, ema_keys = [], []
    for key in keys:
        if key in SCALARS or key in DROPPED or key.startswith(DROPPED_PREFIXES):
            continue
        elif key.startswith(EMA_PREFIX):
            ema_keys.append(key)
        elif key.startswith("cond_stage_model.") and cond_stage_is_first_stage:
            continue  # the same module as first_stage_model
        else:
            prefix = next((p for p in PREFIXES if key.startswith(p)), None)
            name = None if prefix is None else PREFIXES[prefix] + key[len(prefix):]
            if name is None or (name.endswith("position_ids") and name not in expected):
                if name is None:
                    unknown.append(key)
                continue
            out.raw[name] = key
    if unknown:
        raise CheckpointError(f"{source} holds tensors ldmkit does not know: {', '.join(unknown[:5])}"
                              f"{' ...' if len(unknown) > 5 else ''}; a CompVis LatentDiffusion checkpoint has "
                              f"{', '.join(p + '*' for p in PREFIXES)}, {EMA_PREFIX}* and schedule buffers")
    stray = sorted(set(ema_keys) - set(ema_lookup))
    if stray:
        raise CheckpointError(f"{source} has EMA tensors for no parameter of the UNet its config describes: "
                              f"{', '.join(stray[:5])}")
    out.ema = {ema_lookup[key]: key for key in ema_keys}
    if out.ema and len(out.ema) != len(ema_lookup):
        missing = sorted(set(ema_lookup) - set(ema_keys))
        raise CheckpointError(f"{source} has EMA weights for only part of the UNet (missing {', '.join(missing[:5])})")
    return out


def check_against(model: LatentDiffusion, names: CompVisNames, shapes: Mapping[str, tuple], source: str) -> None:
    """Every tensor the model needs is there with its shape (`shapes`: the checkpoint's, by its keys), its EMA
    copies too, and nothing else; errors name CompVis keys."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}

    def compvis(name: str) -> str:
        prefix = next(p for p, q in PREFIXES.items() if name.startswith(q))
        return prefix + name[len(PREFIXES[prefix]):]

    missing = [compvis(n) for n in expected if n not in names.raw]
    unexpected = [key for n, key in names.raw.items() if n not in expected]
    wrong = [f"{key}: checkpoint {shapes[key]} vs config {expected[n]}"
             for n, key in (*names.raw.items(), *names.ema.items()) if n in expected and shapes[key] != expected[n]]
    problems = mismatch_report(missing, unexpected, wrong)
    if problems:
        raise CheckpointError(f"{source} does not match the architecture its config describes "
                              f"({problems}); is this the config the checkpoint was trained with?")


def with_scalars(model: LatentDiffusion, scalars: Mapping[str, torch.Tensor], source: str) -> None:
    """Check the checkpoint's alphas_cumprod against the schedule the config describes, and set its scale_factor
    (which wins over the YAML's value); `scalars`: those of SCALARS the checkpoint has."""
    if "alphas_cumprod" in scalars:
        ours = model.schedule.alphas_cumprod_f32
        theirs = scalars["alphas_cumprod"].float().cpu()
        if theirs.shape != ours.shape or float((theirs - ours).abs().max()) > 1e-6:
            raise CheckpointError(f"{source}: its alphas_cumprod buffer differs from the schedule the config "
                                  "describes (timesteps, linear_start, linear_end, beta_schedule); use the config "
                                  "the model was trained with")
    if "scale_factor" in scalars:
        model.config = dataclasses.replace(model.config, scale_factor=float(scalars["scale_factor"]))


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

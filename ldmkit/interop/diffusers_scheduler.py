"""ldmkit DiffusionConfig <-> a diffusers scheduler config (`scheduler/scheduler_config.json`).

    schedule "scaled_linear" / "linear" / "cosine"  <-> beta_schedule "scaled_linear" / "linear" /
                                                        "squaredcos_cap_v2" (cosine needs cosine_s = 0.008,
                                                        the offset diffusers fixes)
    timesteps, beta_start, beta_end                   <-> num_train_timesteps, beta_start, beta_end
    prediction "eps" / "x0" / "v"                     <-> prediction_type "epsilon" / "sample" / "v_prediction"

    timestep_spacing, steps_offset                    <-> timestep_spacing, steps_offset (which timesteps
                                                        fewer sampling steps visit; ldmkit's "uniform" exports
                                                        as "leading", the same walk when steps divide T)

The exported scheduler is a DDIMScheduler set up to repeat ldmkit's default DDIM: set_alpha_to_one
False, no clipping or thresholding. On import any diffusers discrete-time scheduler config is read;
only the keys above define the model, other sampling options (clipping, eta, ...) are the sampler's
business and ignored.
What changes the trained schedule and has no ldmkit equivalent raises a ConfigError: trained_betas,
rescale_betas_zero_snr, other beta schedules. `min_snr_gamma` is a training setting diffusers'
schedulers do not hold.
"""

from __future__ import annotations

import dataclasses

from ldmkit.diffusion.schedule import DiffusionConfig
from ldmkit.errors import ConfigError

SCHEDULES = {"scaled_linear": "scaled_linear", "linear": "linear", "cosine": "squaredcos_cap_v2"}
PREDICTIONS = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
DIFFUSERS_COSINE_S = 0.008
DDIM_AS_COMPVIS = {"clip_sample": False, "set_alpha_to_one": False, "thresholding": False,
                   "rescale_betas_zero_snr": False}
DIFFUSERS_SPACINGS = ("leading", "trailing", "linspace")  # ldmkit's "uniform" (CompVis) has none: "leading"


def scheduler_config(cfg: DiffusionConfig) -> dict:
    """The DDIMScheduler config (with "_class_name") of the diffusion process `cfg`."""
    if cfg.schedule == "cosine" and cfg.cosine_s != DIFFUSERS_COSINE_S:
        raise ConfigError(f"diffusion config key 'cosine_s' = {cfg.cosine_s}: diffusers' squaredcos_cap_v2 "
                          f"schedule fixes the offset at {DIFFUSERS_COSINE_S}")
    return {"_class_name": "DDIMScheduler", "num_train_timesteps": cfg.timesteps, "beta_start": cfg.beta_start,
            "beta_end": cfg.beta_end, "beta_schedule": SCHEDULES[cfg.schedule], "trained_betas": None,
            "prediction_type": PREDICTIONS[cfg.prediction], **DDIM_AS_COMPVIS,
            "timestep_spacing": cfg.timestep_spacing if cfg.timestep_spacing in DIFFUSERS_SPACINGS else "leading",
            "steps_offset": cfg.steps_offset}


def diffusion_config_from_scheduler(config: dict, min_snr_gamma: float | None = None) -> DiffusionConfig:
    """The DiffusionConfig of a diffusers scheduler config (a dict, e.g. `dict(scheduler.config)`)."""
    if config.get("trained_betas") is not None:
        raise ConfigError("diffusers scheduler config key 'trained_betas': ldmkit builds betas from a named "
                          "schedule; a table of trained betas has no DiffusionConfig equivalent")
    if config.get("rescale_betas_zero_snr"):
        raise ConfigError("diffusers scheduler config key 'rescale_betas_zero_snr' = true: ldmkit has no "
                          "zero-terminal-SNR rescaling of the schedule")
    names = {v: k for k, v in SCHEDULES.items()}
    beta_schedule = config.get("beta_schedule", "linear")
    if beta_schedule not in names:
        raise ConfigError(f"diffusers beta_schedule {beta_schedule!r} has no ldmkit equivalent; "
                          f"ldmkit reads {', '.join(names)}")
    predictions = {v: k for k, v in PREDICTIONS.items()}
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in predictions:
        raise ConfigError(f"diffusers prediction_type {prediction!r} has no ldmkit equivalent; "
                          f"ldmkit reads {', '.join(predictions)}")
    spacing = config.get("timestep_spacing", "leading")
    if spacing not in DIFFUSERS_SPACINGS:
        raise ConfigError(f"diffusers timestep_spacing {spacing!r} is unknown; ldmkit reads "
                          f"{', '.join(DIFFUSERS_SPACINGS)}")
    defaults = DiffusionConfig()
    return dataclasses.replace(
        defaults, schedule=names[beta_schedule], timesteps=int(config.get("num_train_timesteps", 1000)),
        beta_start=float(config.get("beta_start", 0.0001)), beta_end=float(config.get("beta_end", 0.02)),
        prediction=predictions[prediction], min_snr_gamma=min_snr_gamma, timestep_spacing=spacing,
        steps_offset=int(config.get("steps_offset", 0)))


def training_equivalent(a: DiffusionConfig, b: DiffusionConfig) -> bool:
    """Whether two configs define the same diffusion process as far as diffusers can tell
    (cosine ignores beta_start / beta_end; min_snr_gamma is not part of it)."""
    def key(c: DiffusionConfig) -> tuple:
        betas = () if c.schedule == "cosine" else (c.beta_start, c.beta_end)
        return c.schedule, c.timesteps, c.prediction, betas
    return key(a) == key(b)

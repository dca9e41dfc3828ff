import dataclasses
import json

import pytest
import torch

from ldmkit.diffusion.schedule import DiffusionConfig, Schedule
from ldmkit.errors import ConfigError
from ldmkit.interop.diffusers_models import load_scheduler_folder, save_scheduler_folder
from ldmkit.interop.diffusers_scheduler import diffusion_config_from_scheduler, scheduler_config

diffusers = pytest.importorskip("diffusers")

CONFIGS = [
    DiffusionConfig(),  # the LDM paper's scaled_linear, eps
    DiffusionConfig(schedule="linear", beta_start=1e-4, beta_end=0.02, prediction="x0", timesteps=500),
    DiffusionConfig(schedule="cosine", prediction="v"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.schedule)
def test_diffusers_scheduler_from_the_folder_has_the_same_schedule(cfg, tmp_path):
    save_scheduler_folder(cfg, tmp_path)
    scheduler = diffusers.DDIMScheduler.from_pretrained(tmp_path)
    ours = Schedule.from_config(cfg).alphas_cumprod
    torch.testing.assert_close(scheduler.alphas_cumprod.double(), ours, atol=1e-6, rtol=1e-5)
    assert scheduler.config.prediction_type == {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}[cfg.prediction]
    assert load_scheduler_folder(tmp_path) == cfg


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.schedule)
def test_diffusers_to_ldmkit_to_diffusers_is_identical(cfg, tmp_path):
    theirs = diffusers.DDIMScheduler(**{k: v for k, v in scheduler_config(cfg).items() if not k.startswith("_")})
    theirs.save_pretrained(tmp_path / "theirs")
    save_scheduler_folder(load_scheduler_folder(tmp_path / "theirs"), tmp_path / "back")
    again = diffusers.DDIMScheduler.from_pretrained(tmp_path / "back")
    plain = [json.loads(json.dumps({k: v for k, v in s.config.items() if not k.startswith("_")}))
             for s in (theirs, again)]
    assert plain[0] == plain[1]


def test_other_schedulers_and_sampling_options_read_as_the_same_process():
    sd = diffusers.PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                 skip_prk_steps=True, steps_offset=1)
    cfg = diffusion_config_from_scheduler(dict(sd.config))
    assert (cfg.schedule, cfg.beta_start, cfg.beta_end, cfg.prediction) == ("scaled_linear", 0.00085, 0.012, "eps")


def test_what_ldmkit_cannot_express_is_named():
    good = scheduler_config(DiffusionConfig())
    for key, value in (("trained_betas", [0.1, 0.2]), ("rescale_betas_zero_snr", True),
                       ("beta_schedule", "sigmoid"), ("prediction_type", "flow")):
        with pytest.raises(ConfigError, match=key):
            diffusion_config_from_scheduler({**good, key: value})
    with pytest.raises(ConfigError, match="cosine_s"):
        scheduler_config(dataclasses.replace(DiffusionConfig(schedule="cosine"), cosine_s=0.01))

from pathlib import Path

import pytest
import torch

from ldmkit.checkpoint import save_checkpoint
from ldmkit.config import load_config, to_dict
from ldmkit.errors import ConfigError
from ldmkit.training.ldm import LDMRunConfig
from ldmkit.training.run import prepare_run


def _config(*overrides: str) -> LDMRunConfig:
    return load_config(LDMRunConfig, Path(__file__).parents[2] / "configs/ldm/text-emoji64.yaml", overrides)


def _saved_run(run_dir, config: dict) -> None:
    save_checkpoint(run_dir, 10, {"w": torch.zeros(1)}, "ldm", config, {"config": config, "step": 10})


def test_a_run_saved_before_a_new_option_existed_still_resumes(tmp_path):
    cfg = _config()
    old = to_dict(cfg)
    del old["data"]["classes"]  # as written by a version without data.classes
    _saved_run(tmp_path, old)
    _, state = prepare_run(tmp_path, cfg, resume=True, comparable=("data", "unet"))
    assert state["step"] == 10


def test_resume_refuses_a_changed_model_or_data_section_and_names_the_key(tmp_path):
    _saved_run(tmp_path, to_dict(_config()))
    changed = _config("data.classes=[flags]")
    with pytest.raises(ConfigError, match=r"data\.classes"):
        prepare_run(tmp_path, changed, resume=True, comparable=("data", "unet"))

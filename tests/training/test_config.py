import math
from pathlib import Path

import pytest
import torch

from ldmkit.config import from_dict
from ldmkit.errors import ConfigError
from ldmkit.training.config import TrainConfig, adamw, learning_rate


def test_warmup_then_constant_or_cosine():
    cfg = TrainConfig(steps=110, lr=1.0, warmup_steps=10)
    assert [learning_rate(cfg, s) for s in (0, 4, 9, 10, 109)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    cos = TrainConfig(steps=110, lr=1.0, warmup_steps=10, lr_schedule="cosine", min_lr_ratio=0.1)
    assert learning_rate(cos, 10) == 1.0
    assert math.isclose(learning_rate(cos, 60), 0.1 + 0.9 * 0.5)
    assert math.isclose(learning_rate(cos, 110), 0.1)


def test_batch_must_split_into_micro_batches():
    with pytest.raises(ConfigError, match="not divisible by train.grad_accum"):
        from_dict(TrainConfig, {"batch_size": 6, "grad_accum": 4})


@pytest.mark.parametrize("data, message", [
    ({"lr": -1}, "train.lr must be 0 or more, got -1.0; AdamW learning rates are around 1e-4"),
    ({"lr": -1e-9}, "train.lr must be 0 or more, got -1e-09"),
    ({"betas": [1.5, 0.9]}, r"train.betas must be two numbers in \[0, 1\), got \[1.5, 0.9\]"),
    ({"betas": [0.9, 1.0]}, r"train.betas must be two numbers in \[0, 1\)"),
    ({"betas": [-0.1, 0.9]}, r"train.betas must be two numbers in \[0, 1\)"),
    ({"weight_decay": -1}, "train.weight_decay must be 0 or more, got -1.0; 0 turns it off"),
    ({"grad_clip": -1}, "train.grad_clip is a maximum gradient norm and must be 0 or more, got -1.0; 0 or null"),
    ({"warmup_steps": -1}, "train.warmup_steps must be 0 or more, got -1"),
    ({"keep_last": -1}, "train.keep_last must be 0 or more, got -1; 0 keeps every checkpoint"),
    ({"min_lr_ratio": 1.5}, r"train.min_lr_ratio must be in \[0, 1\], got 1.5"),
    ({"min_lr_ratio": -0.1}, r"train.min_lr_ratio must be in \[0, 1\], got -0.1"),
    ({"max_nonfinite": -1}, "train.max_nonfinite must be 0 or more, got -1"),
    ({"max_minutes": 0}, r"train.max_minutes must be positive \(or null: no time limit\), got 0.0"),
    ({"steps": 0}, "train.steps must be at least 1, got 0"),
    ({"grad_accum": 0}, "train.grad_accum must be at least 1, got 0"),
    ({"ckpt_every": 0}, "train.ckpt_every must be at least 1, got 0"),
])
def test_optimiser_settings_out_of_range_are_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(TrainConfig, data)


def test_the_edges_of_each_range_are_accepted():
    cfg = from_dict(TrainConfig, {"lr": 0, "betas": [0.0, 0.0], "weight_decay": 0, "grad_clip": 0, "warmup_steps": 0,
                                  "min_lr_ratio": 1.0, "keep_last": 0, "max_nonfinite": 0})
    assert cfg.keep_last == 0 and cfg.min_lr_ratio == 1.0
    adamw([torch.nn.Parameter(torch.zeros(1))], cfg)  # what the checks let through, AdamW takes


@pytest.mark.parametrize("data, message", [
    ({"ema_decay": 1.5}, r"config key 'ema_decay' must be in \[0, 1\], got 1.5"),
    ({"ema_decay": -0.1}, r"config key 'ema_decay' must be in \[0, 1\], got -0.1"),
    ({"sample_n": 0}, "config key 'sample_n' must be at least 1, got 0"),
    ({"sample_steps": 0}, "config key 'sample_steps' must be at least 1, got 0"),
    ({"sample_steps": 51, "diffusion": {"timesteps": 50}},
     r"config key 'sample_steps' must be at most diffusion.timesteps \(50\), got 51"),
    ({"scale_factor": 0}, "config key 'scale_factor' must be positive, got 0.0; or null"),
])
def test_ldm_run_settings_out_of_range_are_config_errors(data, message):
    from ldmkit.training.ldm import LDMRunConfig

    with pytest.raises(ConfigError, match=message):
        from_dict(LDMRunConfig, {"unet": {"num_heads": 2}, **data})
    from_dict(LDMRunConfig, {"unet": {"num_heads": 2}, "ema_decay": 1.0, "sample_n": 1, "sample_steps": 1000})


def test_attention_past_the_deepest_level_is_refused_only_when_a_run_starts_from_scratch(tmp_path):
    """A UNet converted from CompVis may list attention factors past its deepest level (CompVis ignores them), and
    so may the config of a run trained before ldmkit refused them: fine-tuning and resuming keep such a UNet, a
    new run from scratch refuses it before anything is written."""
    from ldmkit.training.ldm import LDMRunConfig, train_ldm

    unet = {"num_heads": 2, "channel_mult": [1, 2], "attention_resolutions": [2, 4]}
    assert from_dict(LDMRunConfig, {"unet": unet, "init": {"model": "m"}}).unet.attention_resolutions == (2, 4)
    with pytest.raises(ConfigError, match=r"'attention_resolutions': 4 is not the downsampling factor of a level; "
                                          r"with 2 levels choose from \[1, 2\]"):
        train_ldm(from_dict(LDMRunConfig, {"unet": unet}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_autoencoder_run_needs_an_evaluation_batch():
    from ldmkit.training.autoencoder import AutoencoderRunConfig

    with pytest.raises(ConfigError, match="config key 'eval_batches' must be at least 1, got 0"):
        from_dict(AutoencoderRunConfig, {"eval_batches": 0})


LDM_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ldm" / "emoji64-kl-f4.yaml"
AE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "autoencoder" / "kl-f4-emoji64.yaml"
FILES = {  # a broken config file each
    "tab.yaml": b"first_stage: identity\nunet:\n\tin_channels: 3\n",
    "utf16.yaml": "first_stage: identity\n".encode("utf-16"),
    "twice.yaml": b"first_stage: identity\nema_decay: 0.9\nema_decay: 0.99\n",
    "list.yaml": b"[]\n",
}


@pytest.mark.parametrize("argv, message", [
    ("train {tmp}/tab.yaml", r"config file .*tab.yaml is not valid YAML: line 3, column 1: found character '\\t' "
                             r"that cannot start any token; fix the file \(YAML indents with spaces, not tabs\)$"),
    ("train {tmp}/utf16.yaml", r"config file .*utf16.yaml is not UTF-8 text \(byte 0xff at offset 0\); save it as "
                               "UTF-8"),
    ("train {tmp}/twice.yaml", r"twice.yaml is not valid YAML: line 3, column 1: duplicate key 'ema_decay' \(first "
                               r"given on line 2\)"),
    ("train {tmp}/list.yaml", r"the top level of .*list.yaml must be a mapping of config keys, got a list \[\]"),
    ("train {ldm} --set train.lr=[unclosed", r"override 'train.lr=\[unclosed': the value is not valid YAML \(column "
                                             r"10: expected ',' or '\]', but got '<stream end>'\); write a number"),
    ("train {ldm} --set scale_factor=.nan", r"config key 'scale_factor' must be a finite number, got nan; give a "
                                            "number, or leave the key out for its default$"),
    ("train {ldm} --set diffusion.min_snr_gamma=.nan", r"'diffusion.min_snr_gamma' must be a finite number, got nan"),
    ("train {ldm} --set train.max_minutes=.inf", r"'train.max_minutes' must be a finite number, got inf"),
    ("train {ldm} --set train.min_lr_ratio=.nan", r"'train.min_lr_ratio' must be a finite number, got nan"),
    ("train {ldm} --set train.grad_clip=-.inf", r"'train.grad_clip' must be a finite number, got -inf"),
    ("train {ldm} --set train.lr=1e999", r"'train.lr' must be a finite number, got inf"),
    ("train {ldm} --set train.lr=-1", r"^ldmkit train: error: train.lr must be 0 or more, got -1.0; AdamW learning "
                                      "rates are around 1e-4$"),
    ("train {ldm} --set train.betas=[1.5,0.9]", r"train.betas must be two numbers in \[0, 1\), got \[1.5, 0.9\]"),
    ("train {ldm} --set train.weight_decay=-1", r"train.weight_decay must be 0 or more, got -1.0"),
    ("train {ldm} --set ema_decay=1.5", r"config key 'ema_decay' must be in \[0, 1\], got 1.5"),
    ("train {ldm} --set sample_n=0", r"config key 'sample_n' must be at least 1, got 0"),
    ("train {ldm} --set sample_steps=0", r"config key 'sample_steps' must be at least 1, got 0"),
    ("train {ldm} --set unet.attention_resolutions=[3]", r"unet config key 'attention_resolutions': 3 is not the "
                                                         r"downsampling factor of a level; with 3 levels choose from "
                                                         r"\[1, 2, 4\]$"),
    ("train-autoencoder {ae} --set eval_batches=0", r"config key 'eval_batches' must be at least 1, got 0"),
    ("train-autoencoder {ae} --set loss.perceptual_weight=.nan",
     r"config key 'loss.perceptual_weight' must be a finite number, got nan"),
    ("train-autoencoder {ae} --set train.betas=[0.5,1]", r"train.betas must be two numbers in \[0, 1\)"),
])
def test_a_bad_config_is_one_line_and_exit_code_2_before_anything_is_written(argv, message, tmp_path, capsys,
                                                                              monkeypatch):
    import re
    import shlex

    from ldmkit.cli import main
    from ldmkit.training import autoencoder, ldm

    def accepted(*args, **kwargs):  # the config passed its checks: a training run would start here
        pytest.fail(f"`ldmkit {argv}` accepted the config")

    monkeypatch.setattr(ldm, "train_ldm", accepted)
    monkeypatch.setattr(autoencoder, "train_autoencoder", accepted)
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    text = argv.format(tmp=tmp_path, ldm=LDM_CONFIG, ae=AE_CONFIG)
    code = main([*shlex.split(text), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"ldmkit {text.split()[0]}: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "run").exists()


def test_attention_past_the_deepest_level_through_the_command_writes_nothing(tmp_path, capsys):
    from ldmkit.cli import main

    code = main(["train", str(LDM_CONFIG), "--set", "unet.attention_resolutions=[8]", "--out", str(tmp_path / "r")])
    assert code == 2 and not (tmp_path / "r").exists()
    assert capsys.readouterr().err.strip().endswith("8 is not the downsampling factor of a level; with 3 levels "
                                                    "choose from [1, 2, 4]")

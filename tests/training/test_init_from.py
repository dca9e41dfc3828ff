"""Fine-tuning (`ldmkit train CONFIG --init-from MODEL`): the run takes MODEL's architecture and weights.

Tiny runs through the CLI (tests/conftest.py: TinyRuns): a base model trained 2 steps, then runs that
start from it, from an original CompVis pair and from a diffusers folder. With train.lr=0 the weights
never move, so a run's weights are exactly the ones it started from.
"""

import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import ldmkit
from ldmkit.checkpoint import load_model_file, save_model_file
from ldmkit.cli import main
from ldmkit.config import read_yaml

REPO = Path(__file__).resolve().parents[2]
CLASS_CONFIG = REPO / "configs" / "ldm" / "class-emoji64.yaml"
FIXTURES = Path(os.environ.get("LDMKIT_COMPVIS_FIXTURES", REPO / ".." / "shared" / "fixtures" / "compvis"))
FROZEN = ["train.lr=0"]  # the weights stay where they start


def sets(*values: str) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


@pytest.fixture(scope="module")
def bases(tmp_path_factory, tiny_autoencoder):
    """Two tiny trained models: an unconditional one and a class-conditional one (2 steps each)."""
    from tests.conftest import TinyRuns, link_renders

    root = tmp_path_factory.mktemp("bases")
    tiny = TinyRuns(link_renders(root / "cache"))
    tiny.cli(*tiny.ldm(root / "uncond", 2, tiny_autoencoder))
    tiny.cli(*tiny.ldm(root / "class", 2, tiny_autoencoder, config=CLASS_CONFIG))
    return {"uncond": root / "uncond", "class": root / "class"}


def model_tensors(run: Path) -> dict[str, torch.Tensor]:
    from ldmkit.checkpoint import resolve_model_file

    return load_file(str(resolve_model_file(run)))


def ema_weights(run: Path) -> dict[str, torch.Tensor]:
    """The weights a model file is used with: its EMA copies where it has them."""
    tensors = model_tensors(run)
    weights = {k: v for k, v in tensors.items() if not k.startswith("ema.")}
    weights.update({k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")})
    return weights


def raw_weights(run: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model_tensors(run).items() if not k.startswith("ema.")}


def run_config(run: Path) -> dict:
    return read_yaml((run / "config.yaml").read_text())


def test_the_run_starts_from_the_models_ema_weights_and_takes_its_architecture(tmp_path, tiny, tiny_autoencoder,
                                                                               bases):
    run = tmp_path / "ft"
    tiny.cli(*tiny.ldm(run, 1, tiny_autoencoder, *FROZEN), "--init-from", bases["uncond"])
    start, base = raw_weights(run), ema_weights(bases["uncond"])
    assert start.keys() == base.keys()
    assert [k for k in start if not torch.equal(start[k], base[k])] == []
    assert any(not torch.equal(v, raw_weights(bases["uncond"])[k]) for k, v in base.items())  # EMA != raw there
    cfg, base_cfg = run_config(run), run_config(bases["uncond"])
    assert cfg["init"]["model"] == str(bases["uncond"]) and cfg["first_stage"] == str(bases["uncond"])
    assert cfg["unet"] == base_cfg["unet"] and cfg["diffusion"] == base_cfg["diffusion"]
    assert cfg["scale_factor"] == load_model_file(bases["uncond"])[1]["scale_factor"]
    # the base was trained on centred latents (the main job's config); its first stage, already centred, is kept
    # as it is (the first-stage weights are among those compared above), not centred a second time
    assert base_cfg["center_latents"] is True and cfg["center_latents"] is False

    raw = tmp_path / "ft-raw"  # init.use_ema: false starts from the raw weights
    tiny.cli(*tiny.ldm(raw, 1, tiny_autoencoder, *FROZEN, "init.use_ema=false"), "--init-from", bases["uncond"])
    assert all(torch.equal(v, raw_weights(bases["uncond"])[k]) for k, v in raw_weights(raw).items())


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_a_resumed_finetuning_run_equals_an_uninterrupted_one(tmp_path, tiny, tiny_autoencoder, bases, lora):
    more = ["lora.rank=2", "train.lr=0.01"] if lora else []
    full, split = tmp_path / "full", tmp_path / "split"
    tiny.cli(*tiny.ldm(full, 3, tiny_autoencoder, *more), "--init-from", bases["uncond"])
    tiny.cli(*tiny.ldm(split, 1, tiny_autoencoder, *more), "--init-from", bases["uncond"])
    tiny.cli("train", "--resume", split, "--set", "train.steps=3")  # no --init-from: the run's config has it
    assert set(tiny.losses(full)) == {1, 2, 3} and tiny.losses(split) == tiny.losses(full)
    a, b = model_tensors(full), model_tensors(split)
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    assert any(k.endswith("lora_B.weight") for k in a) == lora


def test_resume_refuses_a_changed_base(tmp_path, tiny, tiny_autoencoder, bases, capsys):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(bases["uncond"], base)
    run = tmp_path / "ft"
    tiny.cli(*tiny.ldm(run, 1, tiny_autoencoder), "--init-from", base)
    tiny.cli("train", "--resume", base, "--set", "train.steps=3")  # the base trains on: its weights change
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--set", "train.steps=2"]) == 2
    assert "the model it started from, has changed since" in capsys.readouterr().err



@pytest.mark.parametrize("override, message", [
    ("unet.model_channels=64", r"unet.model_channels is 64 in the config but 32 in .*uncond; drop it or match it"),
    ("unet.channel_mult=[1,2,2]", r"unet.channel_mult is \[1, 2, 2\] in the config but \[1, 2\]"),
    ("diffusion.prediction=v", r"diffusion.prediction is 'v' in the config but 'eps'"),
    ("scale_factor=0.5", r"scale_factor is 0.5 in the config but .* in .*; drop it or match it"),
    ("lora.rank=2 lora.targets=[attn9.to_q]", r"lora.targets entry 'attn9.to_q' names no layer of this UNet"),
])
def test_a_config_that_contradicts_the_model_is_refused_before_anything_is_written(
        tmp_path, tiny, tiny_autoencoder, bases, override, message, capsys, cli_error):
    import re

    run = tmp_path / "ft"
    err = cli_error([*tiny.ldm(run, 1, tiny_autoencoder, *override.split()), "--init-from", bases["uncond"]])
    assert re.search(message, err), err
    assert not run.exists()


def test_fine_tuning_flags_that_cannot_work_are_refused(tmp_path, tiny, tiny_autoencoder, bases, capsys, cli_error):
    run = tmp_path / "run"
    assert "a LoRA adapts a trained model; give it with --init-from" in cli_error(
        tiny.ldm(run, 1, tiny_autoencoder, "lora.rank=4"))
    assert "drop --init-from" in cli_error(["train", "--resume", bases["uncond"], "--init-from", bases["class"]])
    assert "add --init-from" in cli_error([*tiny.ldm(run, 1, tiny_autoencoder), "--init-config", "x.yaml"])
    assert "holds no checkpoint" in cli_error([*tiny.ldm(run, 1, tiny_autoencoder), "--init-from", bases["uncond"],
                                        "--init-config", "x.yaml"])
    assert "does not exist" in cli_error([*tiny.ldm(run, 1, tiny_autoencoder), "--init-from", tmp_path / "nope"])
    assert "it can grow" in cli_error([*tiny.ldm(run, 1, tiny_autoencoder, "conditioning.class_label.num_classes=5",
                                           config=CLASS_CONFIG), "--init-from", bases["class"]])
    assert "unet.use_spatial_transformer is True in the config but False" in cli_error(
        [*tiny.ldm(run, 1, tiny_autoencoder, config=CLASS_CONFIG), "--init-from", bases["uncond"]])
    grow = tiny.ldm(run, 1, tiny_autoencoder, "conditioning.class_label.num_classes=12", "lora.rank=2",
                    config=CLASS_CONFIG)
    assert "a LoRA run keeps" in cli_error([*grow, "--init-from", bases["class"]])
    tensors, config, _ = load_model_file(tiny_autoencoder)  # another autoencoder: one weight changed
    other = tmp_path / "other-ae.safetensors"
    save_model_file(other, {k: v + (k == sorted(tensors)[0]) for k, v in tensors.items()}, "autoencoder", config)
    assert "is another autoencoder than the model's own" in cli_error(
        [*tiny.ldm(run, 1, other), "--init-from", bases["uncond"]])
    assert not run.exists()


def test_more_classes_keep_the_old_rows_and_start_the_new_ones_as_the_null_class(tmp_path, tiny, tiny_autoencoder,
                                                                                 bases):
    run = tmp_path / "ft"
    tiny.cli(*tiny.ldm(run, 1, tiny_autoencoder, *FROZEN, "conditioning.class_label.num_classes=12",
                       config=CLASS_CONFIG), "--init-from", bases["class"])
    old = ema_weights(bases["class"])["conditioner.embedding.weight"]  # (11, 32): classes 0-9, null row 10
    new = raw_weights(run)["conditioner.embedding.weight"]  # (13, 32): classes 0-11, null row 12
    assert old.shape[0] == 11 and new.shape[0] == 13
    assert torch.equal(new[:10], old[:10]) and torch.equal(new[12], old[10])
    assert torch.equal(new[10], old[10]) and torch.equal(new[11], old[10])
    cfg = run_config(run)["conditioning"]["class_label"]
    assert cfg["num_classes"] == 12 and cfg["names"] == []
    same = tmp_path / "same"  # the same classes: the model's names are kept
    tiny.cli(*tiny.ldm(same, 1, tiny_autoencoder, *FROZEN, config=CLASS_CONFIG), "--init-from", bases["class"])
    names = load_model_file(bases["class"])[1]["conditioning"]["class_label"]["names"]
    assert len(names) == 10 and run_config(same)["conditioning"]["class_label"]["names"] == names


def test_init_from_an_original_compvis_pair_without_a_config(tmp_path, tiny):
    from ldmkit.interop.foreign_models import load_foreign

    case = FIXTURES / "kl_crossattn_class"  # SpatialTransformer UNet, ClassEmbedder of 11 rows (10: the null one)
    run = tmp_path / "ft"
    tiny.cli("train", "--init-from", case / "model.ckpt", "--init-config", case / "config.yaml", "--out", run,
             *sets(*tiny.data(), *FROZEN, "train.steps=1", "train.batch_size=2", "sample_n=1", "sample_steps=1"))
    model, _ = load_foreign(case / "model.ckpt", case / "config.yaml")  # (EMA weights)
    start = raw_weights(run)
    assert [k for k, v in model.state_dict().items() if not torch.equal(v, start[k])] == []
    cfg = run_config(run)
    assert cfg["init"]["config"] == str(case / "config.yaml") and cfg["scale_factor"] == 0.18215
    assert cfg["data"]["resolution"] == 32 and cfg["conditioning"]["class_label"]["null_index"] == 10


def test_init_from_a_diffusers_folder(tmp_path, tiny):
    from ldmkit.autoencoder import AutoencoderConfig
    from ldmkit.interop.diffusers_folders import save_diffusers_folder
    from ldmkit.pipeline import LatentDiffusion, LDMConfig
    from ldmkit.unet import UNET_PRESETS

    torch.manual_seed(0)
    first = AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 2), num_res_blocks=1)
    model = LatentDiffusion(LDMConfig(first, UNET_PRESETS["tiny"], scale_factor=0.5, image_size=16))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # no zero layers: every weight is checked
    folder = save_diffusers_folder(model, tmp_path / "diffusers")
    run = tmp_path / "ft"
    tiny.cli("train", "--init-from", folder, "--out", run,
             *sets(*tiny.data(), *FROZEN, "train.steps=1", "train.batch_size=2", "sample_n=1", "sample_steps=1"))
    start = raw_weights(run)
    assert [k for k, v in model.state_dict().items() if not torch.equal(v, start[k])] == []
    assert yaml.safe_load((run / "config.yaml").read_text())["scale_factor"] == 0.5


def test_a_grown_layout_vocabulary_keeps_the_class_and_coordinate_tokens():
    from ldmkit.autoencoder import AutoencoderConfig
    from ldmkit.conditioning import ConditioningConfig
    from ldmkit.conditioning.sections import LayoutConfig
    from ldmkit.pipeline import LatentDiffusion, LDMConfig
    from ldmkit.training.init_from import copy_init_weights
    from ldmkit.unet import UNET_PRESETS

    def layout_model(classes: int) -> LatentDiffusion:
        cond = ConditioningConfig(kind="layout", layout=LayoutConfig(num_classes=classes, embed_dim=32, max_boxes=2,
                                                                     coord_bins=4, layers=1))
        return LatentDiffusion(LDMConfig(AutoencoderConfig(kind="identity", in_channels=4),
                                         UNET_PRESETS["tiny-crossattn"], conditioning=cond, image_size=8))

    torch.manual_seed(0)
    old, new = layout_model(3), layout_model(5)
    fresh = new.conditioner.transformer.token_emb.weight.detach().clone()
    copy_init_weights(new, old)
    a, b = old.conditioner.transformer.token_emb.weight, new.conditioner.transformer.token_emb.weight
    assert torch.equal(b[:4], a[:4])  # padding and classes 0-2
    assert torch.equal(b[4:6], fresh[4:6])  # classes 3 and 4: new rows, freshly initialised
    assert torch.equal(b[6:], a[4:])  # the 4 coordinate bins, shifted


TIMESTEP = ["conditioning.class_label.injection=timestep", "unet.num_classes=11",
            "unet.use_spatial_transformer=false", "unet.context_dim=null"]


def test_a_timestep_class_model_trains_samples_by_class_and_cannot_grow(tmp_path, tiny, tiny_autoencoder, cli_error):
    base = tmp_path / "base"
    tiny.cli(*tiny.ldm(base, 2, tiny_autoencoder, *TIMESTEP, config=CLASS_CONFIG))
    assert "label_emb.weight" in " ".join(ema_weights(base))
    assert main(["sample", str(base), "--class", "7", "--guidance", "3", "--n", "1", "--steps", "3",
                 "--device", "cpu", "--out", str(tmp_path / "samples")]) == 0
    pipe = ldmkit.load(base, device="cpu")
    first, second = (pipe.latents([0], torch.tensor([label]), 3, "ddim", guidance=3.0) for label in (1, 7))
    assert (first - second).abs().max() > 0  # the class reaches the UNet (2 steps: too little for the PNGs)
    grow = tiny.ldm(tmp_path / "run", 1, tiny_autoencoder, *TIMESTEP, "conditioning.class_label.num_classes=12",
                    config=CLASS_CONFIG)
    assert "whose table cannot grow" in cli_error([*grow, "--init-from", base])

"""Loading CompVis checkpoints: EMA selection, conversion round trip, and errors that name the tensor.

Refusing pickles that would run code: test_tensor_files.py.
"""

import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

import ldmkit
from ldmkit import state_dicts
from ldmkit.config import read_yaml
from ldmkit.errors import CheckpointError
from ldmkit.interop import compvis, tensor_files
from ldmkit.interop.compvis import convert_compvis, find_original_pair, load_compvis, read_state_dict
from ldmkit.interop.compvis_config import translate
from ldmkit.interop.compvis_weights import to_compvis
from ldmkit.interop.foreign_models import load_foreign
from ldmkit.pipeline.model import LatentDiffusion

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("LDMKIT_COMPVIS_FIXTURES", REPO / ".." / "shared" / "fixtures" / "compvis"))


def case(name):
    folder = FIXTURES / name
    assert (folder / "model.ckpt").is_file(), f"CompVis fixtures missing at {folder}"
    return folder / "model.ckpt", folder / "config.yaml"


def unet_out(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, model.config.unet.in_channels, 8, 8, generator=g)
    context = torch.randn(2, 1, model.config.unet.context_dim, generator=g) if model.config.unet.context_dim else None
    with torch.no_grad():
        return model.unet(x, torch.tensor([10, 500]), context=context)


def test_ema_is_used_by_default_and_can_be_turned_off():
    ckpt, config = case("kl_crossattn_class")
    ema, raw = load_compvis(ckpt, config), load_compvis(ckpt, config, use_ema=False)
    assert not torch.equal(unet_out(ema), unet_out(raw))
    state = read_state_dict(ckpt)
    name = "input_blocks.1.0.in_layers.0.weight"
    assert torch.equal(ema.unet.state_dict()[name], state["model_ema.diffusion_modelinput_blocks10in_layers0weight"])
    assert torch.equal(raw.unet.state_dict()[name], state["model.diffusion_model." + name])
    pipe = ldmkit.load(ckpt, device="cpu", config=config)
    torch.testing.assert_close(unet_out(pipe.model), unet_out(ema), atol=1e-5, rtol=0)  # (its fast attention)


@pytest.mark.parametrize("name", ["kl_crossattn_class", "kl_crossattn_bert"])
def test_convert_round_trip(tmp_path, name):
    ckpt, config = case(name)
    target = convert_compvis(ckpt, config, tmp_path / "converted")
    with safe_open(str(target), framework="pt") as f:
        assert f.metadata()["ldmkit.kind"] == "ldm" and "compvis" in f.metadata()["ldmkit.converted_from"]
    for use_ema in (True, False) if name.endswith("class") else (True,):  # only the class case has EMA weights
        direct = ldmkit.load(ckpt, device="cpu", use_ema=use_ema, config=config)
        converted = ldmkit.load(tmp_path / "converted", device="cpu", use_ema=use_ema)
        assert converted.config == direct.config
        ours, theirs = converted.model.state_dict(), direct.model.state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
        condition = torch.tensor([1, 2]) if name.endswith("class") else ["a red apple", "a cat"]
        a = direct.latents([0, 1], condition, steps=2, guidance=2.0)
        assert torch.equal(a, converted.latents([0, 1], condition, steps=2, guidance=2.0))


def test_original_pair_is_found_in_a_folder_or_beside_the_checkpoint(tmp_path):
    ckpt, config = case("vq_uncond_attention")
    folder = tmp_path / "original"
    folder.mkdir()
    (folder / "model.ckpt").symlink_to(ckpt)
    (folder / "v1.yaml").symlink_to(config)
    assert find_original_pair(folder) == (folder / "model.ckpt", folder / "v1.yaml")
    assert find_original_pair(folder / "model.ckpt") == (folder / "model.ckpt", folder / "v1.yaml")
    assert ldmkit.load(folder, device="cpu").config.first_stage.kind == "vq"
    (folder / "other.yaml").write_text("model: {}\n")
    with pytest.raises(CheckpointError, match="several YAML"):
        find_original_pair(folder)
    converted = convert_compvis(ckpt, config, tmp_path / "converted")
    assert find_original_pair(converted) is None and find_original_pair(converted.parent) is None


def test_wrong_architecture_names_the_tensor(tmp_path):
    ckpt, config = case("kl_concat_sr")
    data = read_yaml(config.read_text())
    data["model"]["params"]["unet_config"]["params"]["model_channels"] = 64
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match=r"wrong shape model\.diffusion_model\.[\w.]+: checkpoint \("):
        load_compvis(ckpt, wrong)
    data = read_yaml(config.read_text())
    data["model"]["params"]["linear_end"] = 0.012
    wrong.write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match="alphas_cumprod"):
        load_compvis(ckpt, wrong)


def test_unknown_tensors_fail_and_a_scale_factor_buffer_wins(tmp_path):
    ckpt, config = case("kl_concat_sr")
    state = read_state_dict(ckpt)
    save_file({**state, "scale_factor": torch.tensor(0.25)}, tmp_path / "scaled.safetensors")
    assert load_compvis(tmp_path / "scaled.safetensors", config).config.scale_factor == 0.25
    save_file({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.safetensors")
    with pytest.raises(CheckpointError, match="extra.weight"):
        load_compvis(tmp_path / "extra.safetensors", config)
    del state["first_stage_model.decoder.conv_out.bias"]
    save_file(state, tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="missing first_stage_model.decoder.conv_out.bias"):
        load_compvis(tmp_path / "missing.safetensors", config)


def never_read_whole(path, *args, **kwargs):
    raise AssertionError(f"{path} was read whole")


def test_a_safetensors_checkpoint_loads_tensor_by_tensor_into_the_unets_dtype(tmp_path, monkeypatch):
    """As an A1111 user's .safetensors: never read whole, each UNet tensor read once, raw or EMA as use_ema
    picks (the other set never read), into a UNet made in unet_dtype; the rest stays float32."""
    ckpt, config = case("kl_crossattn_class")  # EMA weights beside the raw ones
    state = read_state_dict(ckpt)
    file = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, file)
    full = load_compvis(ckpt, config)
    monkeypatch.setattr(compvis, "read_state_dict", never_read_whole)
    monkeypatch.setattr(tensor_files, "read_state_dict", never_read_whole)
    monkeypatch.setattr("safetensors.torch.load_file", never_read_whole)
    monkeypatch.setattr(state_dicts, "READ_BUDGET", 1)  # one tensor per mapping of the file
    read = []

    class Recording:  # safe_open, noting the name of every tensor read
        def __init__(self, path, **kwargs):
            self.file = safe_open(path, **kwargs)

        def __enter__(self):
            self.file.__enter__()
            return self

        def __exit__(self, *exc):
            return self.file.__exit__(*exc)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def get_tensor(self, name):
            read.append(name)
            return self.file.get_tensor(name)

    monkeypatch.setattr(state_dicts, "safe_open", Recording)
    half = load_foreign(file, config, unet_dtype=torch.bfloat16)[0]
    assert {p.dtype for p in half.unet.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in half.first_stage.parameters()} == {torch.float32}
    ours, expected = half.state_dict(), full.state_dict()
    assert ours.keys() == expected.keys()
    assert all(torch.equal(ours[k], expected[k].to(ours[k].dtype)) for k in ours)
    unet_read = [k for k in read if k.startswith(("model_ema.", "model.diffusion_model."))]
    assert len(unet_read) == len(half.unet.state_dict()) and all(k.startswith("model_ema.") for k in unet_read)
    name = "input_blocks.1.0.in_layers.0.weight"
    ema = state["model_ema.diffusion_modelinput_blocks10in_layers0weight"]
    assert torch.equal(half.unet.state_dict()[name], ema.to(torch.bfloat16))

    read.clear()
    raw = load_compvis(file, config, use_ema=False, unet_dtype=torch.bfloat16)
    assert not any(k.startswith("model_ema.") for k in read) and len(read) == len(set(read))
    assert all(torch.equal(v, state["model.diffusion_model." + k].to(torch.bfloat16))
               for k, v in raw.unet.state_dict().items())
    assert not torch.equal(raw.unet.state_dict()[name], half.unet.state_dict()[name])


UNET, EMA = "model.diffusion_model.", "model_ema.diffusion_model"
CORRUPTIONS = {  # name: (change to the checkpoint's tensors, the error's text after the file's path)
    "unknown": (lambda s: s.update({"extra.weight": torch.zeros(1)}),
                " holds tensors ldmkit does not know: extra.weight; a CompVis LatentDiffusion checkpoint has "
                "model.diffusion_model.*, first_stage_model.*, cond_stage_model.*, model_ema.* and schedule buffers"),
    "stray EMA": (lambda s: s.update({EMA + "nosuchweight": torch.zeros(1)}),
                  " has EMA tensors for no parameter of the UNet its config describes: "
                  "model_ema.diffusion_modelnosuchweight"),
    "part EMA": (lambda s: s.pop(EMA + "time_embed0weight"),
                 " has EMA weights for only part of the UNet (missing model_ema.diffusion_modeltime_embed0weight)"),
    "shapes": (lambda s: (s.pop("first_stage_model.decoder.conv_out.bias"), s.update({
        UNET + "extra.weight": torch.zeros(1), UNET + "time_embed.0.bias": torch.zeros(1),
        EMA + "input_blocks10in_layers0bias": torch.zeros(2)})),
               " does not match the architecture its config describes (missing first_stage_model.decoder.conv_out."
               "bias; unexpected model.diffusion_model.extra.weight; wrong shape model.diffusion_model.time_embed.0."
               "bias: checkpoint (1,) vs config (128,); model_ema.diffusion_modelinput_blocks10in_layers0bias: "
               "checkpoint (2,) vs config (32,)); is this the config the checkpoint was trained with?"),
    "raw missing": (lambda s: s.pop(UNET + "out.2.bias"),
                    " does not match the architecture its config describes (missing model.diffusion_model.out.2.bias)"
                    "; is this the config the checkpoint was trained with?"),
    "schedule": (lambda s: s.update(alphas_cumprod=s["alphas_cumprod"] * 0.5),
                 ": its alphas_cumprod buffer differs from the schedule the config describes (timesteps, "
                 "linear_start, linear_end, beta_schedule); use the config the model was trained with"),
}


def test_a_ckpt_loads_its_ema_or_raw_weights_into_a_bfloat16_unet():
    ckpt, config = case("kl_crossattn_class")  # a pickle: mapped, its tensors copied one by one
    state, full = read_state_dict(ckpt), load_compvis(ckpt, config)
    for use_ema, expected in ((True, full.unet.state_dict()),
                              (False, {k: state["model.diffusion_model." + k] for k in full.unet.state_dict()})):
        half = load_compvis(ckpt, config, use_ema=use_ema, unet_dtype=torch.bfloat16)
        assert all(torch.equal(v, expected[k].to(torch.bfloat16)) for k, v in half.unet.state_dict().items())
        assert {p.dtype for p in half.first_stage.parameters()} == {torch.float32}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_checkpoints_that_do_not_fit_are_named_in_one_line_from_either_file(corruption, tmp_path):
    """The same line from a .ckpt (read whole) and a .safetensors (checked from its header), for either set."""
    ckpt, config = case("kl_crossattn_class")
    state = read_state_dict(ckpt)
    change, message = CORRUPTIONS[corruption]
    change(state)
    torch.save({"state_dict": state}, tmp_path / "model.ckpt")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    for file in (tmp_path / "model.ckpt", tmp_path / "model.safetensors"):
        for use_ema in (True, False):
            with pytest.raises(CheckpointError) as err:
                load_compvis(file, config, use_ema=use_ema, unet_dtype=torch.bfloat16)
            assert str(err.value) == f"{file}{message}"


def test_hybrid_and_identity_models_round_trip_through_the_compvis_layout(tmp_path):
    """to_compvis is the inverse of the loader, for layouts the fixtures do not cover."""
    unet = {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": {
        "image_size": 8, "in_channels": 7, "out_channels": 4, "model_channels": 32, "attention_resolutions": [2],
        "num_res_blocks": 1, "channel_mult": [1, 2], "num_head_channels": 16, "use_spatial_transformer": True,
        "context_dim": 16}}
    data = {"model": {"target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": {
        "linear_start": 0.0015, "linear_end": 0.0195, "image_size": 8, "channels": 4, "conditioning_key": "hybrid",
        "unet_config": unet, "first_stage_config": {"target": "ldm.models.autoencoder.AutoencoderKL", "params": {
            "embed_dim": 4, "ddconfig": {"double_z": True, "z_channels": 4, "resolution": 16, "in_channels": 3,
                                         "out_ch": 3, "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1,
                                         "attn_resolutions": [8], "dropout": 0.0}}},
        "cond_stage_config": {"target": "ldm.modules.encoders.modules.ClassEmbedder",
                              "params": {"n_classes": 5, "embed_dim": 16}}}}}
    (tmp_path / "hybrid.yaml").write_text(yaml.safe_dump(data))
    torch.manual_seed(0)
    original = LatentDiffusion(translate(data).config)
    save_file({k: v.contiguous() for k, v in to_compvis(original).items()}, tmp_path / "hybrid.safetensors")
    loaded = load_compvis(tmp_path / "hybrid.safetensors", tmp_path / "hybrid.yaml")
    assert loaded.config.first_stage.attn_factors == (2,)
    raw = {"class": torch.tensor([1, 4]), "low_res": torch.randn(2, 3, 8, 8)}
    cond = loaded.condition(raw)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        assert torch.equal(loaded.unet(x, t, **cond), original.unet(x, t, **original.condition(raw)))


@pytest.mark.parametrize("name", ["kl_crossattn_class", "kl_crossattn_bert"])
def test_the_null_condition_is_the_one_compvis_guides_with(name):
    """Pipeline guidance uses model.null_condition: class 10 of 11 / the empty prompt, as in the fixtures."""
    from safetensors.torch import load_file

    ckpt, config = case(name)
    expected = load_file(ckpt.parent / "expected.safetensors")["uncond_cond"]
    null = load_compvis(ckpt, config).null_condition(2, torch.device("cpu"))["context"]
    torch.testing.assert_close(null, expected, atol=1e-5, rtol=1e-5)


def test_a_png_from_a_compvis_pair_regenerates_from_any_folder(tmp_path, monkeypatch):
    """The PNG records the checkpoint (absolute) and its YAML, so --from-png needs neither flag nor folder."""
    import shutil

    import numpy as np
    from PIL import Image

    from ldmkit.cli import main

    ckpt, config = case("kl_crossattn_class")
    folder = tmp_path / "pair"
    folder.mkdir()
    shutil.copy(ckpt, folder / "model.ckpt")
    shutil.copy(config, folder / "config.yaml")
    shutil.copy(config, folder / "other.yaml")  # two YAMLs: the checkpoint needs --config
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "pair/model.ckpt", "--config", "pair/config.yaml", "--class", "3", "--n", "1",
                 "--steps", "2", "--out", "out"]) == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["sample", "--from-png", str(tmp_path / "out" / "000000.png"), "--out", "again"]) == 0
    a, b = (np.asarray(Image.open(p)) for p in (tmp_path / "out" / "000000.png", Path("again") / "000000.png"))
    assert np.array_equal(a, b)

"""Stable Diffusion v1 (FrozenCLIPEmbedder): the CLIP text encoder through the optional `transformers`.

Skipped when transformers is not installed (it is the optional extra ldmkit[clip]). A tiny random
CLIPTextModel and a tiny BPE tokenizer are written to a local folder (`clip_folder`, conftest.py);
nothing is downloaded.
"""

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

transformers = pytest.importorskip("transformers")

from ldmkit.conditioning import ConditioningConfig, build_conditioner  # noqa: E402
from ldmkit.conditioning.sections import TextConfig  # noqa: E402
from ldmkit.interop.compvis import convert_compvis, load_compvis  # noqa: E402
from ldmkit.interop.compvis_config import translate  # noqa: E402
from ldmkit.interop.compvis_weights import to_compvis  # noqa: E402
from ldmkit.pipeline.checkpoint import load_ldm  # noqa: E402
from ldmkit.pipeline.model import LatentDiffusion  # noqa: E402

CPU = torch.device("cpu")


def reference(folder, prompts, model=None):
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(folder))
    model = model or transformers.CLIPTextModel.from_pretrained(str(folder))
    ids = tokenizer(prompts, truncation=True, max_length=77, padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        return model(input_ids=ids).last_hidden_state  # as SD's FrozenCLIPEmbedder: no attention mask


def test_clip_conditioner_matches_the_clip_text_model(clip_folder):
    model = build_conditioner(ConditioningConfig(kind="text", text=TextConfig(
        encoder="clip", embed_dim=32, weights_path=str(clip_folder))))
    prompts = ["a red apple", "a cat"]
    torch.testing.assert_close(model(prompts)["context"], reference(clip_folder, prompts))
    torch.testing.assert_close(model.null(1, CPU)["context"], reference(clip_folder, [""]))
    assert not any(p.requires_grad for p in model.parameters())


def test_an_empty_clip_conditioner_filled_by_a_loader_encodes_as_the_read_one(clip_folder):
    cfg = ConditioningConfig(kind="text", text=TextConfig(encoder="clip", embed_dim=32, weights_path=str(clip_folder)))
    read, empty = build_conditioner(cfg), build_conditioner(cfg, empty_clip=True)
    assert read.state_dict().keys() == empty.state_dict().keys()
    empty.load_state_dict(read.state_dict(), strict=True)  # what a loader does; buffers outside it are set already
    prompts = ["a red apple", "a cat"]
    torch.testing.assert_close(empty(prompts)["context"], reference(clip_folder, prompts), rtol=0, atol=0)
    assert not any(p.requires_grad for p in empty.parameters())


def test_a_clip_folder_without_weights_is_refused_for_training(clip_folder, tmp_path):
    from ldmkit.config import load_config
    from ldmkit.errors import ConfigError
    from ldmkit.training.ldm import LDMRunConfig, train_ldm

    bare = tmp_path / "clip-config-only"
    shutil.copytree(clip_folder, bare)
    (bare / "model.safetensors").unlink()
    text = TextConfig(encoder="clip", embed_dim=32, weights_path=str(bare))
    with pytest.raises(ConfigError, match="holds no CLIP weights"):
        build_conditioner(ConditioningConfig(kind="text", text=text))
    assert build_conditioner(ConditioningConfig(kind="text", text=text), empty_clip=True)  # a loader fills it
    cfg = load_config(LDMRunConfig, Path(__file__).parents[2] / "configs/ldm/text-emoji64.yaml", [
        "first_stage=identity", "conditioning.text.encoder=clip", f"conditioning.text.weights_path={bare}",
        "conditioning.text.embed_dim=32", "unet.context_dim=32", "train.device=cpu"])
    with pytest.raises(ConfigError, match="holds no CLIP weights"):
        train_ldm(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_stable_diffusion_layout_loads_with_a_local_clip_folder(clip_folder, tmp_path):
    unet = {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": {
        "image_size": 8, "in_channels": 4, "out_channels": 4, "model_channels": 32, "attention_resolutions": [2, 1],
        "num_res_blocks": 1, "channel_mult": [1, 2], "num_heads": 2, "use_spatial_transformer": True,
        "transformer_depth": 1, "context_dim": 32, "use_checkpoint": True, "legacy": False}}
    data = {"model": {"base_learning_rate": 1e-4, "target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": {
        "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "first_stage_key": "jpg",
        "cond_stage_key": "txt", "image_size": 8, "channels": 4, "cond_stage_trainable": False,
        "conditioning_key": "crossattn", "scale_factor": 0.18215, "use_ema": False, "unet_config": unet,
        "first_stage_config": {"target": "ldm.models.autoencoder.AutoencoderKL", "params": {
            "embed_dim": 4, "ddconfig": {"double_z": True, "z_channels": 4, "resolution": 16, "in_channels": 3,
                                         "out_ch": 3, "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1,
                                         "attn_resolutions": [], "dropout": 0.0},
            "lossconfig": {"target": "torch.nn.Identity"}}},
        "cond_stage_config": {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder"}}}}
    (tmp_path / "v1-inference.yaml").write_text(yaml.safe_dump(data))
    original = LatentDiffusion(translate(data, str(clip_folder)).config)
    with torch.no_grad():  # the checkpoint's CLIP weights differ from the folder's: they must win
        original.conditioner.transformer.text_model.final_layer_norm.bias.add_(0.5)
    state = to_compvis(original)
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "sd.safetensors")
    loaded = load_compvis(tmp_path / "sd.safetensors", tmp_path / "v1-inference.yaml", text_encoder=clip_folder)
    context = loaded.condition(["a red apple"])["context"]
    torch.testing.assert_close(context, reference(clip_folder, ["a red apple"],
                                                                 original.conditioner.transformer.text_model))
    assert context.shape == (1, 77, 32)

    # converted, it carries the CLIP config and tokenizer with it, named relative to its folder
    convert_compvis(tmp_path / "sd.safetensors", tmp_path / "v1-inference.yaml", tmp_path / "converted",
                    text_encoder=clip_folder)
    shutil.move(tmp_path / "converted", tmp_path / "moved")
    assert (tmp_path / "moved" / "text_encoder" / "config.json").is_file()
    moved = load_ldm(tmp_path / "moved")
    assert moved.config.conditioning.text.weights_path == str((tmp_path / "moved" / "text_encoder").resolve())
    torch.testing.assert_close(moved.condition(["a red apple"])["context"], context)

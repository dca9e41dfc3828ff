"""Stable Diffusion folders (`StableDiffusionPipeline.save_pretrained`) in and out of ldmkit.

A tiny pipeline with random weights is built with diffusers itself: UNet2DConditionModel,
AutoencoderKL, a CLIPTextModel and a byte-level CLIPTokenizer (`clip_folder`, conftest.py), no
safety checker. ldmkit must sample what diffusers samples from the same start noise, read it in
every command that takes a model, convert it to a file that stands without it, and export CLIP
text models as folders that diffusers runs as they are. Nothing is downloaded.
"""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import ldmkit
from ldmkit.autoencoder import AutoencoderConfig
from ldmkit.cli import main
from ldmkit.conditioning import ConditioningConfig
from ldmkit.conditioning.sections import TextConfig
from ldmkit.diffusion.noise import randn_like_per_sample, seeded_generators
from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.interop.diffusers_folders import load_diffusers_folder, save_diffusers_folder
from ldmkit.pipeline import LatentDiffusion, LDMConfig, Pipeline
from ldmkit.unet import UNET_PRESETS

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

SD_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
SCHEDULERS = {  # as Stable Diffusion releases configure them (StableDiffusionPipeline forces steps_offset 1)
    "DDIMScheduler": dict(SD_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1),
    "PNDMScheduler": dict(SD_SCHEDULE, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1),
    "EulerDiscreteScheduler": dict(SD_SCHEDULE, timestep_spacing="trailing", steps_offset=1),
}
PROMPTS, NEGATIVES = ["a red apple", "a cat!"], ["dog", ""]
FAST = ["--n", "1", "--steps", "2", "--device", "cpu"]


# what Stable Diffusion 2 changes: heads of 64 channels (16 here), linear projections, v-prediction, "!" padding
SD2 = {"unet": {"attention_head_dim": (2, 4), "use_linear_projection": True, "upcast_attention": True},
       "scheduler": {"prediction_type": "v_prediction"}, "tokenizer": {"pad_token": "!"}}
SD1 = {"unet": {"attention_head_dim": 2}, "scheduler": {}, "tokenizer": {}}


def stable_diffusion(clip_folder, scheduler: str = "DDIMScheduler", version: dict = SD1):
    """A tiny StableDiffusionPipeline (64 px images, 8x8x4 latents) with diffusers' random initial weights
    (no zero layers, and images that change visibly with the prompt)."""
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, norm_num_groups=32, **version["unet"])
    vae = diffusers.AutoencoderKL(
        block_out_channels=(32, 64, 64, 64), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=1, norm_num_groups=32,
        sample_size=64)
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae.eval(), unet=unet.eval(),
        text_encoder=transformers.CLIPTextModel.from_pretrained(str(clip_folder)),
        tokenizer=transformers.CLIPTokenizer.from_pretrained(str(clip_folder), **version["tokenizer"]),
        scheduler=getattr(diffusers, scheduler)(**SCHEDULERS[scheduler], **version["scheduler"]), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def sd_folder(clip_folder, tmp_path):
    stable_diffusion(clip_folder).save_pretrained(tmp_path / "sd")
    return tmp_path / "sd"


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def assert_same_images(theirs, ours: Pipeline, steps: int = 4, guidance: float = 3.0) -> None:
    """diffusers' text-to-image pipeline and ldmkit sample the same images (DDIM, eta 0) from the same
    start noise, with prompts, negative prompts and guidance."""
    x_T = randn_like_per_sample((2, *ours.model.latent_shape(64, 64)), seeded_generators([3, 4]), "cpu",
                                torch.float32)
    expected = theirs(PROMPTS, negative_prompt=NEGATIVES, latents=x_T.clone(), num_inference_steps=steps,
                      guidance_scale=guidance, eta=0.0, output_type="np").images  # (2, 64, 64, 3) in [0, 1]
    expected = torch.from_numpy(expected).permute(0, 3, 1, 2)
    images = ours.decode(ours.latents([3, 4], PROMPTS, steps=steps, sampler="ddim", guidance=guidance, x_T=x_T,
                                      negative=NEGATIVES))
    difference = (expected - (images / 2 + 0.5)).abs().max()
    assert difference <= 1e-4, difference
    unguided = ours.decode(ours.latents([3, 4], PROMPTS, steps=steps, sampler="ddim", guidance=guidance, x_T=x_T))
    assert (expected - (unguided / 2 + 0.5)).abs().max() > 1e-2  # the negative prompts matter, visibly


@pytest.mark.parametrize("version", [SD1, SD2], ids=["sd1", "sd2"])
def test_a_stable_diffusion_folder_samples_what_diffusers_samples(version, clip_folder, tmp_path):
    sd_folder = tmp_path / "sd"
    stable_diffusion(clip_folder, version=version).save_pretrained(sd_folder)
    pipe = ldmkit.load(sd_folder, device="cpu")
    cond = pipe.config.conditioning
    assert (cond.kind, cond.text.encoder, cond.text.embed_dim, cond.text.max_tokens, cond.trainable) == \
           ("text", "clip", 32, 77, False)
    assert (cond.text.weights_path, cond.text.vocab_path) == (str(sd_folder / "text_encoder"),
                                                              str(sd_folder / "tokenizer"))
    assert (pipe.config.image_size, pipe.config.scale_factor, pipe.config.diffusion.steps_offset) == (64, 0.18215, 1)
    assert pipe.config.diffusion.prediction == ("v" if version is SD2 else "eps")
    assert_same_images(diffusers.StableDiffusionPipeline.from_pretrained(sd_folder), pipe)


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_the_schedulers_of_stable_diffusion_releases_load(scheduler, clip_folder, tmp_path):
    stable_diffusion(clip_folder, scheduler).save_pretrained(tmp_path)
    diffusion = load_diffusers_folder(tmp_path).config.diffusion
    expected = SCHEDULERS[scheduler]
    assert (diffusion.schedule, diffusion.beta_start, diffusion.beta_end) == ("scaled_linear", 0.00085, 0.012)
    assert (diffusion.timestep_spacing, diffusion.steps_offset) == (expected.get("timestep_spacing", "leading"),
                                                                   expected["steps_offset"])


def test_half_precision_folders_load_in_float32(clip_folder, tmp_path):
    pipe = stable_diffusion(clip_folder).to(torch.float16)
    pipe.save_pretrained(tmp_path / "plain")  # as an "fp16" download holds them
    pipe.save_pretrained(tmp_path / "variant", variant="fp16")  # the files from_pretrained(variant="fp16") fetches
    assert (tmp_path / "variant" / "text_encoder" / "model.fp16.safetensors").is_file()
    assert (tmp_path / "variant" / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    model = load_diffusers_folder(tmp_path / "plain")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.condition(["a cat"])["context"].dtype == torch.float32
    variant = load_diffusers_folder(tmp_path / "variant").state_dict()
    assert all(torch.equal(value, variant[key]) for key, value in model.state_dict().items())


def test_a_text_encoder_saved_by_transformers_4_loads_the_same(sd_folder):
    """transformers 4 names the weights text_model.* and older versions saved the position_ids buffer."""
    expected = load_diffusers_folder(sd_folder).condition(["a red apple"])["context"]
    weights = sd_folder / "text_encoder" / "model.safetensors"
    tensors = {f"text_model.{k}": v for k, v in load_file(weights).items()}
    save_file({**tensors, "text_model.embeddings.position_ids": torch.arange(77)[None]}, weights)
    torch.testing.assert_close(load_diffusers_folder(sd_folder).condition(["a red apple"])["context"], expected)


def test_a_text_encoder_saved_as_a_pickle_loads_the_same(sd_folder):
    """model.safetensors is read tensor by tensor, pytorch_model.bin whole: the same weights either way (here
    with transformers 4's names)."""
    expected = load_diffusers_folder(sd_folder).condition(["a red apple"])["context"]
    weights = sd_folder / "text_encoder" / "model.safetensors"
    tensors = {f"text_model.{k}": v for k, v in load_file(weights).items()}
    torch.save({**tensors, "text_model.embeddings.position_ids": torch.arange(77)[None]},
               sd_folder / "text_encoder" / "pytorch_model.bin")
    weights.unlink()
    torch.testing.assert_close(load_diffusers_folder(sd_folder).condition(["a red apple"])["context"], expected)


def edit_index(folder, **changes) -> None:
    index = json.loads((folder / "model_index.json").read_text())
    index.update(changes)
    (folder / "model_index.json").write_text(json.dumps(index))


def test_what_the_folder_holds_besides_the_model(sd_folder):
    """safety_checker / feature_extractor are ignored; other components, half a text encoder, an unset
    tokenizer length and --text-encoder are handled with a clear word."""
    edit_index(sd_folder, safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"],
               feature_extractor=["transformers", "CLIPImageProcessor"], requires_safety_checker=True)
    assert load_diffusers_folder(sd_folder).config.conditioning.kind == "text"
    config = json.loads((sd_folder / "tokenizer" / "tokenizer_config.json").read_text())
    config["model_max_length"] = int(1e30)  # what transformers 5 saves when the length was never set
    (sd_folder / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(config))
    assert load_diffusers_folder(sd_folder).config.conditioning.text.max_tokens == 77  # max_position_embeddings
    with pytest.raises(ConfigError, match="carries its own text encoder.*drop it"):
        ldmkit.load(sd_folder, device="cpu", text_encoder=sd_folder / "text_encoder")
    edit_index(sd_folder, image_encoder=["transformers", "CLIPVisionModelWithProjection"])
    with pytest.raises(CheckpointError, match="does not import: image_encoder;"):
        load_diffusers_folder(sd_folder)
    edit_index(sd_folder, image_encoder=[None, None], tokenizer=[None, None])
    with pytest.raises(CheckpointError, match="has a text_encoder but no tokenizer"):
        load_diffusers_folder(sd_folder)


def test_sample_convert_and_sample_again(sd_folder, tmp_path, capsys):
    """The CLI reads the folder directly; its converted folder samples the same PNG without it, wherever it is moved."""
    condition = ["--prompt", "a red apple", "--negative-prompt", "dog", "--guidance", "3"]
    assert main(["sample", str(sd_folder), *condition, *FAST, "--out", str(tmp_path / "a")]) == 0
    assert main(["convert", str(sd_folder), "--out", str(tmp_path / "converted")]) == 0
    shutil.move(sd_folder, tmp_path / "moved")  # the converted model must not need the diffusers folder
    shutil.move(tmp_path / "converted", tmp_path / "elsewhere")  # nor its own place: its text paths are relative
    assert main(["sample", str(tmp_path / "elsewhere"), *condition, *FAST, "--out", str(tmp_path / "b")]) == 0
    a, b = pixels(tmp_path / "a" / "000000.png"), pixels(tmp_path / "b" / "000000.png")
    assert a.shape == (64, 64, 3) and np.array_equal(a, b)
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "moved"), "--text-encoder", "clip/", *FAST, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "drop it" in err


def unzeroed(model: torch.nn.Module) -> torch.nn.Module:
    """The model's initial weights, with its zero-initialised layers (CompVis' zero_module) drawn at random."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * p[0].numel() ** -0.5)
    return model.eval()


def test_exported_clip_models_run_in_stable_diffusion_pipeline(clip_folder, tmp_path):
    """ldmkit's clip text conditioner exports as a StableDiffusionPipeline that diffusers loads and runs as is."""
    text = TextConfig(encoder="clip", embed_dim=32, weights_path=str(clip_folder))
    kl = AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1)
    unet = dict(vars(UNET_PRESETS["tiny-crossattn"]), context_dim=32, in_channels=4, out_channels=4)
    cfg = LDMConfig(kl, type(UNET_PRESETS["tiny"])(**unet), conditioning=ConditioningConfig(kind="text", text=text),
                    scale_factor=0.3, image_size=64)
    torch.manual_seed(0)
    model = unzeroed(LatentDiffusion(cfg))
    save_diffusers_folder(model, tmp_path / "out")
    index = json.loads((tmp_path / "out" / "model_index.json").read_text())
    assert (index["_class_name"], index["text_encoder"], index["tokenizer"]) == \
           ("StableDiffusionPipeline", ["transformers", "CLIPTextModel"], ["transformers", "CLIPTokenizer"])
    assert (index["safety_checker"], index["feature_extractor"], index["requires_safety_checker"]) == \
           ([None, None], [None, None], False)
    theirs = diffusers.StableDiffusionPipeline.from_pretrained(tmp_path / "out")
    theirs.set_progress_bar_config(disable=True)
    assert_same_images(theirs, Pipeline(model))
    back = load_diffusers_folder(tmp_path / "out")
    assert back.config.conditioning.text == TextConfig(encoder="clip", embed_dim=32, max_tokens=77,
                                                       weights_path=str(tmp_path / "out" / "text_encoder"),
                                                       vocab_path=str(tmp_path / "out" / "tokenizer"))
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in back.state_dict().items())


def test_export_diffusers_round_trip_of_a_stable_diffusion_folder(sd_folder, tmp_path):
    assert main(["convert", str(sd_folder), "--out", str(tmp_path / "converted")]) == 0
    assert main(["export-diffusers", str(tmp_path / "converted"), "--out", str(tmp_path / "exported")]) == 0
    theirs = diffusers.StableDiffusionPipeline.from_pretrained(tmp_path / "exported")
    theirs.set_progress_bar_config(disable=True)
    assert_same_images(theirs, ldmkit.load(sd_folder, device="cpu"), steps=2)

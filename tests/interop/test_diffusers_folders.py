import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import ldmkit
from ldmkit import state_dicts
from ldmkit.autoencoder import AutoencoderConfig, build_autoencoder
from ldmkit.conditioning import ConditioningConfig
from ldmkit.conditioning.sections import LowResConfig
from ldmkit.diffusion.schedule import DiffusionConfig
from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.interop import tensor_files
from ldmkit.interop.diffusers_folders import LDMKIT_CONFIG, load_diffusers_folder, save_diffusers_folder
from ldmkit.interop.diffusers_models import (
    load_autoencoder_folder,
    load_unet_folder,
    save_autoencoder_folder,
    save_unet_folder,
)
from ldmkit.interop.diffusers_unet import diffusers_config, from_diffusers_state_dict
from ldmkit.pipeline import LatentDiffusion, LDMConfig, Pipeline
from ldmkit.unet import UNET_PRESETS, UNet

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

KL = AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_factors=(2,))
VQ = AutoencoderConfig(kind="vq", ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=4, embed_dim=4, n_embed=16)


def plain(config) -> dict:
    return json.loads(json.dumps({k: v for k, v in config.items() if not k.startswith("_")}))


@pytest.mark.parametrize("name", ["tiny-legacy", "tiny-crossattn"])  # UNet2DModel, UNet2DConditionModel
def test_unet_folder_round_trips_through_diffusers(name, tmp_path, randomize):
    cfg = UNET_PRESETS[name]
    ours = randomize(UNet(cfg))
    save_unet_folder(ours, tmp_path / "ours")
    class_name, _ = diffusers_config(cfg)
    theirs = getattr(diffusers, class_name).from_pretrained(tmp_path / "ours").eval()
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([3, 901])
    kw, their_kw = {}, {}
    if cfg.num_classes:
        kw["y"] = their_kw["class_labels"] = torch.tensor([1, 4])
    if cfg.context_dim:
        kw["context"] = their_kw["encoder_hidden_states"] = torch.randn(2, 5, cfg.context_dim, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x, t, **their_kw).sample, ours(x, t, **kw), atol=1e-5, rtol=1e-5)
    theirs.save_pretrained(tmp_path / "theirs")  # diffusers -> ldmkit -> diffusers
    save_unet_folder(load_unet_folder(tmp_path / "theirs"), tmp_path / "back")
    again = type(theirs).from_pretrained(tmp_path / "back")
    assert plain(again.config) == plain(theirs.config)
    expected, back = theirs.state_dict(), again.state_dict()
    assert back.keys() == expected.keys() and all(torch.equal(back[k], expected[k]) for k in expected)


def tiny_ldm(first_stage: AutoencoderConfig, randomize, image_size: int = 16,
             conditioning: ConditioningConfig = ConditioningConfig()) -> LatentDiffusion:
    scale = 1.0 if first_stage.kind == "identity" or conditioning.kind != "none" else 0.7
    channels = first_stage.latent_channels
    unet = dataclasses.replace(UNET_PRESETS["tiny"], in_channels=channels + conditioning.concat_channels(channels),
                               out_channels=channels)
    cfg = LDMConfig(first_stage, unet, DiffusionConfig(), conditioning, scale_factor=scale, image_size=image_size)
    return randomize(LatentDiffusion(cfg))


def assert_same_images(pipe, ours: Pipeline, seed: int = 7, steps: int = 4) -> None:
    """diffusers' unconditional pipeline and ldmkit's sample the same images from the same seed."""
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=1, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps,
                  output_type="np").images  # (1, H, W, 3) in [0, 1]
    images = ours.decode(ours.latents([seed], steps=steps, sampler="ddim"))  # (1, 3, H, W) in [-1, 1]
    torch.testing.assert_close(torch.from_numpy(theirs).permute(0, 3, 1, 2), images / 2 + 0.5, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("first_stage", [KL, VQ, AutoencoderConfig(kind="identity")], ids=["kl", "vq", "pixel"])
def test_ldm_pipeline_from_the_folder_samples_the_same_images(first_stage, tmp_path, randomize):
    model = tiny_ldm(first_stage, randomize, image_size=8 if first_stage.kind == "identity" else 16)
    save_diffusers_folder(model, tmp_path)
    pipeline = diffusers.DDIMPipeline if first_stage.kind == "identity" else diffusers.LDMPipeline
    assert_same_images(pipeline.from_pretrained(tmp_path), Pipeline(model))


def test_a_pipeline_diffusers_wrote_samples_the_same_images_and_exports_back_unchanged(tmp_path, randomize):
    """diffusers -> ldmkit -> diffusers at the pipeline level: components built and saved by diffusers."""
    from ldmkit.interop import diffusers_autoencoder, diffusers_scheduler

    cfg = tiny_ldm(VQ, randomize).config
    vq_class, vq_kwargs = diffusers_autoencoder.diffusers_config(VQ, scale_factor=0.7, sample_size=16)
    unet_class, unet_kwargs = diffusers_config(dataclasses.replace(cfg.unet, sample_size=8))
    scheduler = {k: v for k, v in diffusers_scheduler.scheduler_config(cfg.diffusion).items() if k[0] != "_"}
    pipe = diffusers.LDMPipeline(vqvae=randomize(getattr(diffusers, vq_class)(**vq_kwargs), 1),
                                 unet=randomize(getattr(diffusers, unet_class)(**unet_kwargs), 2),
                                 scheduler=diffusers.DDIMScheduler(**scheduler))
    pipe.save_pretrained(tmp_path / "theirs")
    ours = ldmkit.load(tmp_path / "theirs", device="cpu")
    imported_vq = dataclasses.replace(VQ, vq_restart_every=0)  # diffusers has no dead-code restart
    assert (ours.config.scale_factor, ours.config.image_size, ours.config.first_stage) == (0.7, 16, imported_vq)
    assert_same_images(pipe, ours, seed=3)
    save_diffusers_folder(ours.model, tmp_path / "back")
    again = diffusers.LDMPipeline.from_pretrained(tmp_path / "back")
    for name in ("vqvae", "unet", "scheduler"):
        assert plain(getattr(again, name).config) == plain(getattr(pipe, name).config), name
    for name in ("vqvae", "unet"):
        expected, back = getattr(pipe, name).state_dict(), getattr(again, name).state_dict()
        assert back.keys() == expected.keys() and all(torch.equal(back[k], expected[k]) for k in expected), name


def test_super_resolution_pipeline_from_the_folder_samples_the_same_images(tmp_path, randomize):
    vq3 = dataclasses.replace(VQ, z_channels=3, embed_dim=3)  # the pipeline needs latent = image channels
    sr = ConditioningConfig(kind="low_res", low_res=LowResConfig(factor=2))
    model = tiny_ldm(vq3, randomize, conditioning=sr)
    save_diffusers_folder(model, tmp_path)
    module = pytest.importorskip("diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion_superresolution")
    pipe = module.LDMSuperResolutionPipeline.from_pretrained(tmp_path)  # diffusers exports it with transformers
    pipe.set_progress_bar_config(disable=True)
    low_res = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    theirs = pipe(image=low_res, generator=torch.Generator().manual_seed(7), num_inference_steps=4,
                  output_type="np").images
    ours = Pipeline(model)
    images = ours.decode(ours.latents([7], low_res, steps=4, sampler="ddim"))
    torch.testing.assert_close(torch.from_numpy(theirs).permute(0, 3, 1, 2), images / 2 + 0.5, atol=1e-5, rtol=1e-5)
    (tmp_path / LDMKIT_CONFIG).unlink()
    bare = load_diffusers_folder(tmp_path).config
    assert (bare.conditioning, bare.scale_factor, bare.image_size) == (sr, 1.0, 16)


@pytest.mark.parametrize("first_stage", [KL, VQ, AutoencoderConfig(kind="identity")], ids=["kl", "vq", "pixel"])
def test_ldm_folder_reads_back_as_the_same_model(first_stage, tmp_path, randomize):
    model = tiny_ldm(first_stage, randomize, image_size=8 if first_stage.kind == "identity" else 16)
    save_diffusers_folder(model, tmp_path / "out")
    index = json.loads((tmp_path / "out" / "model_index.json").read_text())
    assert index["_class_name"] == ("DDIMPipeline" if first_stage.kind == "identity" else "LDMPipeline")
    back = load_diffusers_folder(tmp_path / "out")
    assert back.config == model.config
    expected = model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in back.state_dict().items())
    (tmp_path / "out" / LDMKIT_CONFIG).unlink()  # from the diffusers configs alone
    bare = load_diffusers_folder(tmp_path / "out")
    assert (bare.config.scale_factor, bare.config.image_size, bare.config.diffusion) == \
           (model.config.scale_factor, model.config.image_size, model.config.diffusion)


def test_folders_ldmkit_cannot_import_are_named(tmp_path, randomize):
    model = tiny_ldm(KL, randomize)
    save_diffusers_folder(model, tmp_path / "out")
    with pytest.raises(CheckpointError, match="not empty"):
        save_diffusers_folder(model, tmp_path / "out")
    config = json.loads((tmp_path / "out" / LDMKIT_CONFIG).read_text())
    config["config"]["scale_factor"] = 0.5
    (tmp_path / "out" / LDMKIT_CONFIG).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="scale_factor"):
        load_diffusers_folder(tmp_path / "out")
    index = json.loads((tmp_path / "out" / "model_index.json").read_text())
    index["text_encoder"] = ["transformers", "CLIPTextModel"]
    (tmp_path / "out" / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="text_encoder"):
        load_diffusers_folder(tmp_path / "out")
    with pytest.raises(CheckpointError, match="no model_index.json.*load_unet_folder"):
        load_diffusers_folder(tmp_path / "out" / "unet")
    with pytest.raises(ConfigError, match="embed_dim"):
        save_diffusers_folder(tiny_ldm(AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 2), z_channels=3,
                                                          embed_dim=4), randomize), tmp_path / "kl")


SAVES = {  # save_pretrained's ways of writing weights: its arguments, and a file each way leaves
    "safetensors": ({}, "diffusion_pytorch_model.safetensors"),
    "fp16": ({"variant": "fp16"}, "diffusion_pytorch_model.fp16.safetensors"),
    "sharded": ({"max_shard_size": "100KB"}, "diffusion_pytorch_model-00002-of-*.safetensors"),
    "sharded-fp16": ({"max_shard_size": "100KB", "variant": "fp16"}, "diffusion_pytorch_model.fp16-00002-of-*"),
    "bin-fp16": ({"safe_serialization": False, "variant": "fp16"}, "diffusion_pytorch_model.fp16.bin"),
    "bin-sharded": ({"safe_serialization": False, "max_shard_size": "100KB"}, "diffusion_pytorch_model.bin.index.json"),
}


def never_read_whole(path):
    raise AssertionError(f"{path} was read whole")


@pytest.mark.parametrize("save", list(SAVES))
def test_unet_folders_load_as_diffusers_saves_them(save, tmp_path, randomize, monkeypatch):
    """Plain, fp16 variant (what from_pretrained(variant="fp16") downloads) and sharded weights; safetensors
    tensor by tensor into the UNet's own dtype (UNet2DModel: its qkv is joined from three diffusers tensors)."""
    kwargs, written = SAVES[save]
    cfg = UNET_PRESETS["tiny-legacy"]
    class_name, config = diffusers_config(cfg)
    theirs = randomize(getattr(diffusers, class_name)(**config))
    theirs.to(torch.float16 if "variant" in kwargs else torch.float32).save_pretrained(tmp_path, **kwargs)
    assert list(tmp_path.glob(written)), sorted(p.name for p in tmp_path.iterdir())
    if "safe_serialization" not in kwargs:
        monkeypatch.setattr(tensor_files, "read_state_dict", never_read_whole)
    monkeypatch.setattr(state_dicts, "READ_BUDGET", 1)  # one tensor per mapping of the files
    ours = load_unet_folder(tmp_path)
    g = torch.Generator().manual_seed(1)
    x, t, y = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([3, 901]), torch.tensor([1, 4])
    with torch.no_grad():
        expected = theirs.float()(x, t, class_labels=y).sample
        torch.testing.assert_close(ours(x, t, y=y), expected, atol=1e-5, rtol=1e-5)
    half = load_unet_folder(tmp_path, dtype=torch.bfloat16)
    assert all(torch.equal(v, ours.state_dict()[k].to(torch.bfloat16)) for k, v in half.state_dict().items())


def test_full_precision_weights_are_read_before_the_fp16_variant(tmp_path, randomize):
    class_name, config = diffusers_config(UNET_PRESETS["tiny"])
    plain = randomize(getattr(diffusers, class_name)(**config), 1)
    plain.save_pretrained(tmp_path)
    half = randomize(getattr(diffusers, class_name)(**config), 2).to(torch.float16)
    half.save_pretrained(tmp_path, variant="fp16")
    for theirs in (plain, half):
        expected = from_diffusers_state_dict(theirs.float().state_dict(), UNET_PRESETS["tiny"])
        ours = load_unet_folder(tmp_path).state_dict()
        assert all(torch.equal(ours[k], expected[k]) for k in expected)
        (tmp_path / "diffusion_pytorch_model.safetensors").unlink(missing_ok=True)  # then only the fp16 file


def test_a_pipeline_folder_with_sharded_and_fp16_weights_loads(tmp_path, randomize):
    model = tiny_ldm(KL, randomize)
    out = save_diffusers_folder(model, tmp_path / "out")
    unet = diffusers.UNet2DModel.from_pretrained(out / "unet")
    vae = diffusers.AutoencoderKL.from_pretrained(out / "vqvae")
    for folder in ("unet", "vqvae"):
        (out / folder / "diffusion_pytorch_model.safetensors").unlink()
    unet.save_pretrained(out / "unet", max_shard_size="100KB")  # the shards and their index only
    vae.to(torch.float16).save_pretrained(out / "vqvae", variant="fp16")  # the fp16 variant only
    back = load_diffusers_folder(out, unet_dtype=torch.bfloat16)
    expected = model.state_dict()
    for key, value in back.state_dict().items():
        rounded = {"unet": torch.bfloat16, "first_stage": torch.float16}[key.split(".")[0]]
        assert torch.equal(value, expected[key].to(rounded).to(value.dtype)), key
    shard = next((out / "unet").glob("*-00002-of-*.safetensors"))
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"names shards that are missing: {shard.name}; download them"):
        load_diffusers_folder(out)
    index = out / "unet" / "diffusion_pytorch_model.safetensors.index.json"
    for broken in ([], {"weight_map": {"conv_in.weight": 3}}):  # (JSON a shard index never holds)
        index.write_text(json.dumps(broken))
        with pytest.raises(CheckpointError, match="has no weight_map naming the shard of each tensor; download it"):
            load_diffusers_folder(out)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
@pytest.mark.parametrize("folder", ["unet", "vae"])
def test_weights_that_do_not_fit_the_config_are_named_in_one_line(folder, fmt, tmp_path, randomize):
    if folder == "unet":  # UNet2DModel: legacy attention, whose qkv diffusers holds as to_q, to_k, to_v
        save_unet_folder(randomize(UNet(UNET_PRESETS["tiny"])), tmp_path)
        load = load_unet_folder
        absent, one_long, one_row = "conv_in.weight", "conv_out.bias", "mid_block.attentions.0.to_k.weight"
        expected = ("missing conv_in.weight (for input_blocks.0.0.weight); unexpected extra.weight; wrong shape "
                    "mid_block.attentions.0.to_q.weight + mid_block.attentions.0.to_k.weight + "
                    "mid_block.attentions.0.to_v.weight (for middle_block.1.qkv.weight): file (64, 64) + (1, 64) + "
                    "(64, 64) vs model (192, 64, 1); conv_out.bias (for out.2.bias): file (1,) vs model (4,)")
    else:  # AutoencoderKL: its attention's Linear weights are ldmkit's 1x1 convs
        save_autoencoder_folder(randomize(build_autoencoder(KL)), tmp_path)
        load = load_autoencoder_folder
        absent, one_long, one_row = ("decoder.conv_in.weight", "decoder.conv_out.bias",
                                   "encoder.mid_block.attentions.0.to_k.weight")
        expected = ("missing decoder.conv_in.weight; unexpected extra.weight; wrong shape "
                    "encoder.mid_block.attentions.0.to_k.weight (for encoder.mid.attn_1.k.weight): file (64,) vs "
                    "model (64, 64, 1, 1); decoder.conv_out.bias: file (1,) vs model (3,)")
    file = tmp_path / "diffusion_pytorch_model.safetensors"
    tensors = load_file(file)
    del tensors[absent]
    row = tensors[one_row][:1] if folder == "unet" else tensors[one_row][0]  # (a 1-D weight: no 1x1 conv of it)
    tensors.update({one_long: torch.zeros(1), one_row: row, "extra.weight": torch.zeros(1)})
    if fmt == "bin":  # a pickle, read whole and converted as a dict: the same check, the same line
        file.unlink()
        torch.save(tensors, tmp_path / "diffusion_pytorch_model.bin")
    else:
        save_file(tensors, file)
    with pytest.raises(CheckpointError) as err:
        load(tmp_path)
    message = str(err.value)
    tail = f"describes ({expected}); do its weights belong" if fmt == "safetensors" else f"fit this config ({expected})"
    assert "\n" not in message and tail in message

"""The fast inference path (fast/inference.py): bfloat16 and compiled Pipelines against the float32 one."""

import copy
import dataclasses

import pytest
import torch

from ldmkit.autoencoder import AutoencoderConfig
from ldmkit.conditioning import ConditioningConfig
from ldmkit.conditioning.sections import ClassConfig
from ldmkit.errors import ConfigError
from ldmkit.fast.inference import compile_cache_dir, compile_for_inference
from ldmkit.pipeline import LatentDiffusion, LDMConfig, Pipeline
from ldmkit.unet import UNET_PRESETS

KL = AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_factors=(2,))
VQ = AutoencoderConfig(kind="vq", ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=4, embed_dim=4, n_embed=16)
BF16_TOL = 0.02  # images in [-1, 1]; measured max differences of these models: 2e-3 (KL), 1.3e-3 (VQ)


def random_model(first_stage: AutoencoderConfig, seed: int = 0) -> LatentDiffusion:
    """A class-conditional tiny LDM (cross-attention to a class token) with all weights random."""
    unet = dataclasses.replace(UNET_PRESETS["tiny-crossattn"], context_dim=32)
    cond = ConditioningConfig(kind="class", class_label=ClassConfig(num_classes=3, embed_dim=32))
    model = LatentDiffusion(LDMConfig(first_stage, unet, conditioning=cond, scale_factor=0.8, image_size=16))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.1 if p.dim() == 1 else p[0].numel() ** -0.5))
    return model.eval()


def images(pipe: Pipeline, guidance: float = 3.0) -> torch.Tensor:
    z = pipe.latents([0, 1], torch.tensor([0, 2]), steps=5, sampler="ddim", guidance=guidance)
    return pipe.decode(z)  # (2, 3, 16, 16) in [-1, 1]


@pytest.mark.parametrize("first_stage", [KL, VQ], ids=["kl", "vq"])
def test_bfloat16_pipeline_is_close_to_float32(first_stage):
    model = random_model(first_stage)
    reference = images(Pipeline(copy.deepcopy(model)))
    fast = Pipeline(model, dtype=torch.bfloat16)
    assert next(model.unet.parameters()).dtype == torch.bfloat16
    assert next(model.first_stage.encoder.parameters()).dtype == torch.float32  # image conditions still encode
    out = images(fast)
    assert out.dtype == torch.float32 and reference.abs().max() > 0.1
    assert (out - reference).abs().max() < BF16_TOL


def test_compiled_float32_pipeline_matches_eager_and_caches_its_code_on_disk(tmp_path, monkeypatch):
    pytest.importorskip("torch._inductor")
    monkeypatch.setenv("LDMKIT_COMPILE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unused")  # (restored after the test: compile sets it)
    model = random_model(KL)
    reference = images(Pipeline(copy.deepcopy(model)))
    out = images(Pipeline(model, compile=True))
    torch.testing.assert_close(out, reference, atol=1e-4, rtol=1e-4)
    assert list((tmp_path / "cache").rglob("*.py")), "no compiled code was cached for the next process"


def test_compile_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    for name in ("LDMKIT_COMPILE_CACHE", "TORCHINDUCTOR_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache_dir() == tmp_path / "ldmkit" / "torch-compile"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "torch"))
    assert compile_cache_dir() == tmp_path / "torch"
    monkeypatch.setenv("LDMKIT_COMPILE_CACHE", str(tmp_path / "ours"))
    assert compile_cache_dir() == tmp_path / "ours"


def test_an_unwritable_compile_cache_is_a_config_error(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("LDMKIT_COMPILE_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(ConfigError, match="LDMKIT_COMPILE_CACHE"):
        compile_for_inference(torch.nn.Identity(), torch.device("cpu"))


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype"):
        Pipeline(random_model(KL), dtype=torch.int8)


def test_float32_pipeline_decodes_in_channels_last_on_cpu():
    model = random_model(KL)
    z = torch.randn(2, *model.latent_shape(16, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model.decode(z)  # NCHW weights
    pipe = Pipeline(copy.deepcopy(model))
    conv = pipe.model.first_stage.decoder.conv_in.weight
    assert conv.dtype == torch.float32 and conv.is_contiguous(memory_format=torch.channels_last)
    assert next(pipe.model.unet.parameters()).is_contiguous()  # the float32 UNet stays NCHW
    torch.testing.assert_close(pipe.decode(z), reference.clamp(-1, 1), atol=1e-5, rtol=1e-5)

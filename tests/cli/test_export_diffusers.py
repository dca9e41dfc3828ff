import dataclasses

import pytest
import torch

from ldmkit.autoencoder import AutoencoderConfig
from ldmkit.checkpoint import save_model_file
from ldmkit.cli import main
from ldmkit.interop.diffusers_folders import load_diffusers_folder
from ldmkit.pipeline import LatentDiffusion, LDMConfig
from ldmkit.pipeline.checkpoint import KIND, ldm_config_dict, ldm_tensors
from ldmkit.unet import UNET_PRESETS


def test_export_diffusers_writes_the_ema_weights_and_reads_back(tmp_path, capsys):
    first_stage = AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 2), num_res_blocks=1)
    model = LatentDiffusion(LDMConfig(first_stage, UNET_PRESETS["tiny"], scale_factor=0.5, image_size=16))
    ema = {name: torch.full_like(p, 0.25) for name, p in model.named_parameters() if name.startswith("unet.")}
    save_model_file(tmp_path / "model.safetensors", ldm_tensors(model, ema), KIND, ldm_config_dict(model))
    assert main(["export-diffusers", str(tmp_path / "model.safetensors"), "--out", str(tmp_path / "out")]) == 0
    assert "wrote diffusers folder" in capsys.readouterr().out
    back = load_diffusers_folder(tmp_path / "out")
    assert back.config == model.config
    assert all((p == 0.25).all() for p in back.unet.parameters())
    assert main(["export-diffusers", str(tmp_path / "model.safetensors"), "--out", str(tmp_path / "out")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export-diffusers", str(tmp_path / "model.safetensors"), "--out", str(tmp_path / "out"),
                 "--no-ema", "--overwrite"]) == 0
    raw = load_diffusers_folder(tmp_path / "out").unet.state_dict()
    assert all(torch.equal(v, model.unet.state_dict()[k]) for k, v in raw.items())


def test_models_with_conditioner_weights_are_refused(tmp_path):
    pytest.importorskip("ldmkit.conditioning.class_embedder")
    unet = dataclasses.replace(UNET_PRESETS["tiny-crossattn"], context_dim=16)
    cfg = LDMConfig(AutoencoderConfig(kind="identity", in_channels=4), unet, image_size=8)
    cfg = dataclasses.replace(cfg, conditioning=dataclasses.replace(
        cfg.conditioning, kind="class", class_label=dataclasses.replace(cfg.conditioning.class_label, embed_dim=16)))
    model = LatentDiffusion(cfg)
    save_model_file(tmp_path / "model.safetensors", ldm_tensors(model), KIND, ldm_config_dict(model))
    assert main(["export-diffusers", str(tmp_path / "model.safetensors"), "--out", str(tmp_path / "out")]) == 2


@pytest.mark.parametrize("kind", ["class", "text", "layout", "semantic", "low_res", "inpaint"])
def test_conditional_models_diffusers_cannot_run_are_refused_with_the_reason(kind, tiny_models, tmp_path, capsys):
    """Refused at export, not when diffusers samples: only unconditional, CLIP text (StableDiffusionPipeline)
    and LDMSuperResolutionPipeline models export."""
    assert main(["export-diffusers", tiny_models[kind], "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the '{kind}' conditioner cannot be exported to diffusers: " in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))

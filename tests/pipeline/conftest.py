import pytest
import torch

from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.checkpoint import save_model_file
from ldmkit.config import to_dict
from ldmkit.pipeline.checkpoint import KIND, ldm_tensors
from ldmkit.pipeline.model import LatentDiffusion, LDMConfig
from ldmkit.unet.presets import UNET_PRESETS


def tiny_ldm(seed: int = 0) -> LatentDiffusion:
    """A KL-f2 first stage + tiny UNet with random (non-zero) weights."""
    torch.manual_seed(seed)
    cfg = LDMConfig(first_stage=AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 2), num_res_blocks=1),
                    unet=UNET_PRESETS["tiny"], scale_factor=0.5, image_size=16)
    model = LatentDiffusion(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and p.abs().max() == 0:  # zero-initialised output layers: make them matter
                p.normal_(0, 0.02)
    return model.eval()


@pytest.fixture
def ldm_file(tmp_path):
    model = tiny_ldm()
    ema = {name: p.detach() + 0.01 for name, p in model.unet.named_parameters()}
    path = tmp_path / "model.safetensors"
    save_model_file(path, ldm_tensors(model, {f"unet.{k}": v for k, v in ema.items()}), KIND, to_dict(model.config))
    return path

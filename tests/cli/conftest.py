"""Tiny untrained model files of every conditioning kind, for CLI tests (the plumbing, not the quality)."""

import pytest
import torch

from ldmkit.checkpoint import save_model_file
from ldmkit.config import from_dict, to_dict
from ldmkit.pipeline.checkpoint import KIND, ldm_tensors
from ldmkit.pipeline.model import LatentDiffusion, LDMConfig

UNET = {"out_channels": 3, "model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
        "attention_resolutions": [2], "num_heads": 2}
CROSS = {"use_spatial_transformer": True, "context_dim": 32}
# name -> (conditioning section, UNet overrides)
KINDS = {
    "none": ({"kind": "none"}, {"in_channels": 3}),
    "class": ({"kind": "class", "class_label": {"num_classes": 3, "embed_dim": 32,
                                                "names": ["apple", "banana", "cherry"]}}, {"in_channels": 3, **CROSS}),
    "text": ({"kind": "text", "text": {"embed_dim": 32, "layers": 1, "max_tokens": 8}}, {"in_channels": 3, **CROSS}),
    "layout": ({"kind": "layout", "layout": {"embed_dim": 32, "max_boxes": 4, "layers": 1}},
               {"in_channels": 3, **CROSS}),
    "semantic": ({"kind": "semantic", "semantic": {"factor": 1}}, {"in_channels": 3 + 11}),
    "low_res": ({"kind": "low_res", "low_res": {"factor": 4, "stages": 2, "multiplier": 2.0}}, {"in_channels": 6}),
    "inpaint": ({"kind": "inpaint"}, {"in_channels": 3 + 4}),
}


def write_model_file(path, conditioning: dict, **unet) -> str:
    """A pixel-space (identity first stage) 16 px LDM with a random output layer, as an ldmkit model file."""
    torch.manual_seed(0)
    cfg = from_dict(LDMConfig, {"unet": {**UNET, **unet}, "conditioning": conditioning, "image_size": 16})
    model = LatentDiffusion(cfg)
    with torch.no_grad():
        model.unet.out[2].weight.normal_(0, 0.05)  # the zero-initialised output conv: make samples differ
    save_model_file(path, ldm_tensors(model), KIND, to_dict(model.config))
    return str(path)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """kind -> a model file of that conditioning kind (see KINDS)."""
    folder = tmp_path_factory.mktemp("tiny-models")
    return {name: write_model_file(folder / f"{name}.safetensors", cond, **unet)
            for name, (cond, unet) in KINDS.items()}

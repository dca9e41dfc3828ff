"""Low-rank adapters (LoRA, Hu et al. 2021) for ldmkit's models, applied to a built model.

The model code (ldmkit/unet/) stays the paper's: adapters are added to a built LatentDiffusion from
outside, as ldmkit/fast/ does for speed-ups.

    config.py   LoRAConfig, the `lora:` section of a training config (rank, alpha, targets)
    targets.py  which layers a config adapts
    layers.py   trainable adapters as parametrizations of frozen weights (training)
    adapter.py  adapters as data (LowRankWeights per layer), merged into a model with a weight
    files.py    adapter files: ldmkit's own, kohya / A1111 and diffusers / PEFT (ldmkit/interop/lora_formats.py)

Sampling with adapters: `ldmkit.load(base, lora=[("runs/ft-lora", 0.8)])`, `ldmkit sample BASE --lora RUN:0.8`;
a standalone model: `ldmkit merge-lora BASE RUN --out DIR`; other formats: `ldmkit export-lora`.
"""

from ldmkit.lora.adapter import Adapter, LowRankWeights, apply_adapter
from ldmkit.lora.config import TARGET_GROUPS, LoRAConfig
from ldmkit.lora.files import apply_adapters, as_specs, parse_spec, read_adapter, write_adapter

__all__ = ["TARGET_GROUPS", "Adapter", "LoRAConfig", "LowRankWeights", "apply_adapter", "apply_adapters", "as_specs",
           "parse_spec", "read_adapter", "write_adapter"]

"""Which layers of a built LatentDiffusion a LoRA adapts: `lora.targets` groups or layer names.

Layers are named by their module path in the LatentDiffusion (`unet.input_blocks.1.1.transformer_blocks.0
.attn1.to_q`, `conditioner.transformer.attn_layers...`), the names adapter files use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import nn

from ldmkit.errors import ConfigError
from ldmkit.lora.config import TARGET_GROUPS, LoRAConfig
from ldmkit.unet.attention import AttentionBlock, BasicTransformerBlock, CrossAttention, SpatialTransformer
from ldmkit.unet.resblock import Downsample, ResBlock, Upsample

ADAPTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)  # layers whose weight a low-rank delta can adapt
TEXT_ATTENTION = ("to_q", "to_k", "to_v", "to_out", "q_proj", "k_proj", "v_proj", "out_proj")  # BERT, CLIP


def _attention(module: nn.Module) -> Iterator[str]:
    if isinstance(module, CrossAttention):
        yield from ("to_q", "to_k", "to_v", "to_out.0")
    elif isinstance(module, AttentionBlock):
        yield from ("qkv", "proj_out")


def _proj(module: nn.Module) -> Iterator[str]:
    if isinstance(module, SpatialTransformer):
        yield from ("proj_in", "proj_out")


def _ff(module: nn.Module) -> Iterator[str]:
    if isinstance(module, BasicTransformerBlock):
        yield from ("ff.net.0.proj", "ff.net.2")


def _conv(module: nn.Module) -> Iterator[str]:
    if isinstance(module, ResBlock):
        yield from ("in_layers.2", "emb_layers.1", "out_layers.3")
        if isinstance(module.skip_connection, nn.Conv2d):
            yield "skip_connection"
    elif isinstance(module, Downsample) and isinstance(module.op, nn.Conv2d):
        yield "op"
    elif isinstance(module, Upsample) and isinstance(module.conv, nn.Conv2d):
        yield "conv"


GROUPS: dict[str, Callable[[nn.Module], Iterator[str]]] = {"attention": _attention, "proj": _proj, "ff": _ff,
                                                           "conv": _conv}
assert set(GROUPS) == set(TARGET_GROUPS)


def unet_targets(unet: nn.Module, targets: tuple[str, ...], prefix: str = "unet") -> list[str]:
    """The module paths of the UNet layers `targets` names (groups or layer-name suffixes), in model order."""
    found: dict[str, None] = {}
    for entry in targets:
        before = len(found)
        for name, module in unet.named_modules():
            if entry in GROUPS:
                for child in GROUPS[entry](module):
                    found[f"{prefix}.{name}.{child}"] = None
            elif isinstance(module, ADAPTABLE) and f".{name}".endswith(f".{entry}"):
                found[f"{prefix}.{name}"] = None
        if len(found) == before and entry not in GROUPS:  # (a group may not apply to every UNet)
            raise ConfigError(f"lora.targets entry {entry!r} names no layer of this UNet; use a group "
                              f"({', '.join(GROUPS)}) or a layer name such as attn2.to_k")
    if not found:
        raise ConfigError(f"lora.targets {list(targets)} name no layer of this UNet (it has no attention layers?); "
                          f"add a group: {', '.join(GROUPS)}")
    order = {f"{prefix}.{name}": i for i, (name, _) in enumerate(unet.named_modules())}
    return sorted(found, key=order.__getitem__)


def text_encoder_targets(conditioner: nn.Module, prefix: str = "conditioner") -> list[str]:
    """The attention projections inside a text conditioner (its transformer's to_q ... or q_proj ...)."""
    return [f"{prefix}.{name}" for name, module in conditioner.named_modules()
            if isinstance(module, nn.Linear) and name.rpartition(".")[2] in TEXT_ATTENTION]


def lora_targets(model: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Module paths (in a LatentDiffusion) of every layer the config adapts."""
    names = unet_targets(model.unet, cfg.targets)
    if cfg.text_encoder:
        text = model.config.conditioning
        if text.kind != "text":
            raise ConfigError(f"lora.text_encoder adapts a text encoder, but this is a '{text.kind}' model; "
                              "set lora.text_encoder: false")
        names += text_encoder_targets(model.conditioner)
    return names

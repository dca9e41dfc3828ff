"""LoRA files in the formats people exchange, read into and written from ldmkit Adapters.

ldmkit names an adapted layer by its path in the LatentDiffusion (`unet.input_blocks.1.1.transformer_blocks.0
.attn1.to_q`: CompVis' UNet names). The other formats name it after diffusers' modules
(ldmkit/interop/diffusers_unet.py maps the names), for SD-v1-layout UNets (cross-attention blocks) and
Stable Diffusion's CLIP text encoder:

    kohya / A1111     lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight
                      ... .lora_up.weight, ... .alpha (scale alpha / rank); text encoder lora_te_text_model_...
                      (CompVis-named lora_unet_input_blocks_1_1_... are read too)
    diffusers / PEFT  unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight / lora_B.weight
                      (what `pipe.load_lora_weights` reads; text_encoder.text_model...; also without the unet.
                      prefix, as `unet.save_lora_adapter` writes), alpha from the `lora_adapter_metadata` JSON
                      (lora_alpha, alpha_pattern), else alpha = rank; older diffusers layouts
                      `...attn1.processor.to_q_lora.down.weight` and `...to_q.lora.down.weight` are read too
    ldmkit            `<ldmkit path>.lora_A.weight`, `.lora_B.weight`, `.alpha`, kind "lora" (ldmkit/lora/adapter.py)

Writing diffusers files folds alpha / rank into lora_B (every diffusers version then loads them with
its default alpha = rank). Legacy-attention UNets (CompVis' AttentionBlock) have no diffusers LoRA
layout and are written in ldmkit's format only.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

import torch
from torch import nn

from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.interop.diffusers_unet import to_diffusers_state_dict
from ldmkit.lora.adapter import KIND, Adapter, LowRankWeights
from ldmkit.unet.config import UNetConfig
from ldmkit.unet.model import UNet

FORMATS = ("ldmkit", "kohya", "diffusers")
METADATA_KEY = "lora_adapter_metadata"  # diffusers' / PEFT's LoraConfig as JSON in the safetensors metadata
# the end of a tensor key -> what the tensor is; the first match wins
SUFFIXES = (("lora_down.weight", "down"), ("lora_up.weight", "up"), ("lora_A.weight", "down"), ("lora_B.weight", "up"),
            ("lora.down.weight", "down"), ("lora.up.weight", "up"), ("lora_linear_layer.down.weight", "down"),
            ("lora_linear_layer.up.weight", "up"), ("down.weight", "down"), ("up.weight", "up"), ("alpha", "alpha"))
UNSUPPORTED = {"dora_scale": "DoRA", "lora_magnitude_vector": "DoRA", "hada_": "LoHa", "lokr_": "LoKr",
               "lora_mid": "LoCon with a mid layer"}
OLD_PROCESSOR = re.compile(r"^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora$")  # diffusers' attention processors
OLD_TEXT = re.compile(r"^(.*\.self_attn)\.(to_q|to_k|to_v|to_out)_lora$")  # their text-encoder counterpart
CLIP_NAMES = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"}
CLIP_PATH = "conditioner.transformer.text_model."  # ldmkit's path of a CLIP text model (conditioning/clip_text.py)


@lru_cache(maxsize=8)
def _unet_names(cfg: UNetConfig) -> dict[str, str]:
    """{diffusers module path: ldmkit module path} of every UNet layer with weights (cross-attention UNets)."""
    with torch.device("meta"):
        keys = list(UNet(cfg).state_dict())
    numbered = {key: torch.tensor(i) for i, key in enumerate(keys)}  # the conversion renames; the values say which
    converted = to_diffusers_state_dict(numbered, cfg)
    names = {}
    for theirs, value in converted.items():
        ours = keys[int(value)]
        names[theirs.rpartition(".")[0]] = ours.rpartition(".")[0]
    return names


def diffusers_names(model: nn.Module) -> dict[str, str]:
    """{ldmkit layer path: diffusers / PEFT layer name} of a LatentDiffusion whose UNet diffusers can express with
    LoRA (cross-attention blocks), its CLIP text encoder included; {} for other UNets."""
    cfg = model.config.unet
    names = {}
    if cfg.use_spatial_transformer:
        try:
            names = {f"unet.{ours}": f"unet.{theirs}" for theirs, ours in _unet_names(cfg).items()}
        except (ConfigError, CheckpointError):  # a UNet diffusers cannot express: ldmkit names only
            names = {}
    for name, module in model.named_modules():
        if name.startswith(CLIP_PATH) and isinstance(module, nn.Linear):
            names[name] = "text_encoder.text_model." + name[len(CLIP_PATH):]
    return names


def kohya_name(diffusers_name: str) -> str:
    """`unet.down_blocks.0...to_q` -> `lora_unet_down_blocks_0_..._to_q`; text_encoder. -> lora_te_."""
    scope, _, rest = diffusers_name.partition(".")
    return {"unet": "lora_unet_", "text_encoder": "lora_te_"}[scope] + rest.replace(".", "_")


def _foreign_names(model: nn.Module) -> dict[str, str]:
    """Every name a file may give a layer of `model` -> the layer's ldmkit path."""
    table = {}
    for name, module in model.named_modules():
        if isinstance(getattr(module, "weight", None), torch.Tensor):
            table[name] = name
            if name.startswith("unet."):
                table["lora_unet_" + name[len("unet."):].replace(".", "_")] = name  # CompVis-named kohya keys
    for ours, theirs in diffusers_names(model).items():
        table[theirs] = ours
        table[kohya_name(theirs)] = ours
        if theirs.startswith("unet."):
            table[theirs[len("unet."):]] = ours  # unet.save_lora_adapter writes no prefix
        elif theirs.startswith("text_encoder.text_model."):  # CLIPTextModel of transformers >= 5: no text_model
            table["text_encoder." + theirs[len("text_encoder.text_model."):]] = ours
    return table


def _split_key(key: str) -> tuple[str, str]:
    """A tensor key -> (layer name as the file spells it, "down" | "up" | "alpha")."""
    for marker, what in UNSUPPORTED.items():
        if marker in key:
            raise CheckpointError(f"key {key!r} belongs to a {what} adapter, which ldmkit does not apply; use a plain "
                                  "LoRA")
    for suffix, role in SUFFIXES:
        if key.endswith("." + suffix):
            layer = key[: -len(suffix) - 1]
            break
    else:
        raise CheckpointError(f"key {key!r} is not a LoRA tensor (lora_down / lora_up / lora_A / lora_B / alpha)")
    if layer.startswith("base_model.model."):  # PEFT's own save_pretrained
        layer = layer[len("base_model.model."):]
    match = OLD_PROCESSOR.match(layer)
    if match:
        layer = f"{match[1]}.{match[2]}" + (".0" if match[2] == "to_out" else "")
    match = OLD_TEXT.match(layer)
    if match:
        layer = f"{match[1]}.{CLIP_NAMES[match[2]]}"
    return layer, role


def _peft_alphas(metadata: dict[str, str]) -> dict[str, dict]:
    """{scope ("unet", "text_encoder", "" for an unprefixed config): its LoraConfig} from the metadata."""
    raw = metadata.get(METADATA_KEY)
    if not raw:
        return {}
    config = json.loads(raw)
    scoped: dict[str, dict] = {}
    for key, value in config.items():
        scope, _, rest = key.partition(".")
        if scope in ("unet", "text_encoder") and rest:
            scoped.setdefault(scope, {})[rest] = value
        else:
            scoped.setdefault("", {})[key] = value
    return scoped


def _alpha_from_config(config: dict, layer: str, rank: int) -> float:
    for pattern, alpha in (config.get("alpha_pattern") or {}).items():
        if re.fullmatch(rf"(.*\.)?{pattern}", layer):
            return float(alpha)
    return float(config.get("lora_alpha", rank))


def read_lora_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str], model: nn.Module,
                      source: str) -> Adapter:
    """The Adapter a LoRA file of any supported format holds, its layers named by `model`'s paths; a key that
    names no layer of `model` is an error naming it (the first such key)."""
    names = _foreign_names(model)
    parts: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    for key in sorted(tensors):
        layer, role = _split_key(key)
        if layer not in names:
            raise CheckpointError(f"{source}: key {key!r} names no layer of this model (the first that does not "
                                  "match); the adapter was made for another model")
        parts.setdefault(names[layer], {})[role] = (key, tensors[key])
    configs = _peft_alphas(metadata)
    native = metadata.get("ldmkit.kind") == KIND
    adapter = {}
    for path, found in parts.items():
        if "down" not in found or "up" not in found:
            have = next(iter(found.values()))[0]
            raise CheckpointError(f"{source}: {have!r} has no matching {'up' if 'down' in found else 'down'} "
                                  "tensor (lora_up / lora_B or lora_down / lora_A); the file is incomplete")
        key, down = found["down"]
        up = found["up"][1]
        if "alpha" in found:
            alpha = float(found["alpha"][1])
        elif native:
            alpha = float(down.shape[0])
        else:
            scope = key.partition(".")[0] if key.partition(".")[0] in configs else ""
            layer = _split_key(key)[0].removeprefix(scope + ".") if scope else _split_key(key)[0]
            alpha = _alpha_from_config(configs.get(scope, {}), layer, down.shape[0])
        if up.shape[1] != down.shape[0]:
            raise CheckpointError(f"{source}: {key!r} has rank {down.shape[0]} but its up tensor {tuple(up.shape)}")
        adapter[path] = LowRankWeights(down=down, up=up, alpha=alpha, key=key)
    return adapter


def _foreign_layer(names: dict[str, str], path: str, fmt: str) -> str:
    if path not in names:
        raise ConfigError(f"the adapter's layer {path} has no {fmt} name: the {fmt} format covers SD-v1-layout "
                          "UNets (cross-attention blocks) and CLIP text encoders; write the ldmkit format instead")
    return names[path]


def kohya_tensors(adapter: Adapter, model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter as a kohya / A1111 file's tensors (diffusers-named, as kohya's SD 1.x trainer writes them)."""
    names = diffusers_names(model)
    tensors = {}
    for path, w in adapter.items():
        name = kohya_name(_foreign_layer(names, path, "kohya"))
        tensors.update({f"{name}.lora_down.weight": w.down.contiguous(), f"{name}.lora_up.weight": w.up.contiguous(),
                        f"{name}.alpha": torch.tensor(float(w.alpha))})
    return tensors


def diffusers_tensors(adapter: Adapter, model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter as `pipe.load_lora_weights` reads it (PEFT names); alpha / rank is folded into lora_B."""
    names = diffusers_names(model)
    tensors = {}
    for path, w in adapter.items():
        name = _foreign_layer(names, path, "diffusers")
        tensors.update({f"{name}.lora_A.weight": w.down.contiguous(),
                        f"{name}.lora_B.weight": (w.up.float() * (w.alpha / w.rank)).to(w.up.dtype).contiguous()})
    return tensors

"""Trainable low-rank adapters on a built model, as torch parametrizations of the frozen weights.

    add_lora(model, cfg)          freeze the model; every targeted `weight` becomes W + scale * B A
    adapter_weights(model, vals)  the adapters as an Adapter (ldmkit/lora/adapter.py), e.g. from EMA values
    merge_lora(model)             bake the adapters into the weights and drop the parametrizations

A parametrization (rather than a wrapper module around the layer) keeps the model code as it is:
every path that reads `layer.weight` (1x1 convolutions run as matrix products, the fast attention
shortcuts) sees the adapted weight, and the layer's own forward is untouched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from ldmkit.lora.adapter import Adapter, LowRankWeights
from ldmkit.lora.config import LoRAConfig
from ldmkit.lora.targets import lora_targets

PARAMETRIZED = ".parametrizations.weight.0."  # between a layer's path and lora_A / lora_B in parameter names


class LowRank(nn.Module):
    """W -> W + scale * (B A).view(W.shape): A (rank, in * k * k) as PEFT initialises it, B (out, rank) zero."""

    def __init__(self, weight: torch.Tensor, rank: int, scale: float):
        super().__init__()
        fan_in = weight[0].numel()
        self.lora_A = nn.Parameter(torch.empty(rank, fan_in, device=weight.device, dtype=torch.float32))
        self.lora_B = nn.Parameter(torch.zeros(weight.shape[0], rank, device=weight.device, dtype=torch.float32))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = scale

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        delta = (self.lora_B @ self.lora_A) * self.scale  # (out, in * k * k)
        return weight + delta.view(weight.shape).to(weight.dtype)


def add_lora(model: nn.Module, cfg: LoRAConfig) -> list[str]:
    """Freeze the UNet and the conditioner of a LatentDiffusion and give every targeted layer a trainable
    adapter; returns the adapted layers' paths."""
    model.unet.requires_grad_(False)
    model.conditioner.requires_grad_(False)
    names = lora_targets(model, cfg)
    for name in names:
        layer = model.get_submodule(name)
        parametrize.register_parametrization(layer, "weight", LowRank(layer.weight, cfg.rank, cfg.scale))
    return names


def lora_layers(model: nn.Module) -> dict[str, LowRank]:
    """{layer path: its LowRank} of every adapted layer inside `model`."""
    return {name: module.parametrizations.weight[0] for name, module in model.named_modules()
            if parametrize.is_parametrized(module, "weight") and isinstance(module.parametrizations.weight[0],
                                                                               LowRank)}


def adapter_weights(model: nn.Module, values: dict[str, torch.Tensor] | None = None, prefix: str = "") -> Adapter:
    """The adapters of `model` (or `values`, e.g. EMA copies keyed by `model`'s parameter names) as an Adapter,
    A and B in their layers' shapes: (rank, in[, k, k]) and (out, rank[, 1, 1]). `prefix` is put before every
    layer path (e.g. to name layers in a LatentDiffusion when `model` holds its UNet as `unet`)."""
    adapter = {}
    for name, lora in lora_layers(model).items():
        weight = model.get_submodule(name).parametrizations.weight.original
        a, b = lora.lora_A, lora.lora_B
        if values is not None:
            a, b = values[f"{name}{PARAMETRIZED}lora_A"], values[f"{name}{PARAMETRIZED}lora_B"]
        rank, ones = a.shape[0], [1] * (weight.dim() - 2)
        adapter[prefix + name] = LowRankWeights(down=a.detach().reshape(rank, *weight.shape[1:]),
                                                up=b.detach().reshape(weight.shape[0], rank, *ones),
                                                alpha=lora.scale * rank)
    return adapter


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every adapted weight by W + scale * B A and remove the adapters (in place)."""
    for name in lora_layers(model):
        parametrize.remove_parametrizations(model.get_submodule(name), "weight", leave_parametrized=True)
    return model

"""Adapters as data: low-rank weight deltas by layer, applied to (merged into) a built model.

    adapter = read_adapter("runs/ft-lora", model)     # an ldmkit LoRA file or run, or a kohya / diffusers file
    apply_adapter(model, adapter, weight=0.8)         # W += 0.8 * (alpha / rank) * up @ down, layer by layer

An Adapter maps a layer's module path in the LatentDiffusion (`unet.output_blocks.3.1.proj_out`) to
its LowRankWeights. ldmkit's own adapter files (kind "lora") store, per layer, `<path>.lora_A.weight`
(down, (rank, in[, k, k])), `<path>.lora_B.weight` (up, (out, rank[, 1, 1])) and `<path>.alpha`,
with the LoRA config and the base model in the metadata. The formats other tools exchange (kohya /
A1111, diffusers / PEFT) are translated by ldmkit/interop/lora_formats.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ldmkit.checkpoint import save_model_file
from ldmkit.errors import CheckpointError

KIND = "lora"


@dataclass
class LowRankWeights:
    down: torch.Tensor  # (rank, in[, k, k]): A
    up: torch.Tensor  # (out, rank[, 1, 1]): B
    alpha: float  # the delta is (alpha / rank) * B A
    key: str = ""  # the file key it was read from, for error messages

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    def shape(self) -> tuple[int, ...]:
        """The shape of the weight this adapts: (out, in[, k, k])."""
        return (self.up.shape[0], *self.down.shape[1:])

    def fits(self, shape: torch.Size) -> bool:
        """Whether this adapts a weight of `shape` (1x1 kernels may be given or left out: kohya and PEFT differ)."""
        def squeezed(dims):
            dims = list(dims)
            while len(dims) > 2 and dims[-1] == 1:
                dims.pop()
            return dims

        return squeezed(self.shape()) == squeezed(shape)

    def delta(self, shape: torch.Size | None = None) -> torch.Tensor:
        """(alpha / rank) * B A in the weight's shape (or `shape`), float32."""
        product = self.up.flatten(1).float() @ self.down.flatten(1).float()  # (out, in * k * k)
        return (product * (self.alpha / self.rank)).view(shape or self.shape())


Adapter = dict[str, LowRankWeights]


def adapter_tensors(adapter: Adapter) -> dict[str, torch.Tensor]:
    """ldmkit's own tensor names for an adapter."""
    tensors = {}
    for name, w in adapter.items():
        tensors.update({f"{name}.lora_A.weight": w.down, f"{name}.lora_B.weight": w.up,
                        f"{name}.alpha": torch.tensor(float(w.alpha))})
    return tensors


def save_adapter(path: str | Path, adapter: Adapter, config: dict, extra: dict[str, str] | None = None) -> None:
    """An ldmkit adapter file: the tensors of `adapter_tensors`, `config` (the LoRA config, the base) as metadata."""
    save_model_file(path, adapter_tensors(adapter), KIND, config, extra)


def apply_adapter(model: nn.Module, adapter: Adapter, weight: float = 1.0, source: str = "the adapter") -> None:
    """Merge `weight` x the adapter into `model`'s weights (in place), after checking every layer: a layer the
    model lacks or of another shape is an error naming it. A weight of 0 changes nothing."""
    layers = dict(model.named_modules())
    for name, w in adapter.items():
        layer = layers.get(name)
        key = w.key or name
        if layer is None or not isinstance(getattr(layer, "weight", None), torch.Tensor):
            raise CheckpointError(f"{source}: its layer {key!r} is not in this model (the first that does not match); "
                                  "the adapter was made for another model")
        if not w.fits(layer.weight.shape):
            raise CheckpointError(f"{source}: its layer {key!r} adapts a {tuple(w.shape())} weight, but this model's "
                                  f"{name} is {tuple(layer.weight.shape)}: the adapter was made for another "
                                  "architecture")
    if weight == 0:
        return
    with torch.no_grad():
        for name, w in adapter.items():
            param = layers[name].weight
            param.copy_((param.float() + weight * w.delta(param.shape).to(param.device)).to(param.dtype))

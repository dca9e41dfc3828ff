"""The trained parts of an LDM (UNet + conditioner) with the loss as forward, and what checkpoints keep of them.

`TrainedParts` is what DDP wraps and the EMA tracks (the frozen first stage stays out); with LoRA only
the adapters require gradients, and `trained_state` keeps those alone.
"""

from __future__ import annotations

import torch
from torch import nn

from ldmkit.conditioning import Conditioning
from ldmkit.data.conditions import batch_condition
from ldmkit.data.transforms import stream_generators
from ldmkit.errors import CheckpointError
from ldmkit.pipeline.model import LatentDiffusion
from ldmkit.training.batches import CONDITION_STREAM, NOISE_STREAM


class TrainedParts(nn.Module):
    """The trained modules (UNet + conditioner) with the loss as forward, for DDP to wrap."""

    def __init__(self, model: LatentDiffusion):
        super().__init__()
        self.unet, self.conditioner = model.unet, model.conditioner
        self._model = [model]  # not a submodule: the frozen first stage stays out of DDP and the EMA

    def forward(self, z0: torch.Tensor, batch: dict, drop_prob: float) -> torch.Tensor:
        """L_LDM of a micro-batch; every random draw of sample i derives from batch["seed"][i]."""
        model = self._model[0]
        seeds = [int(s) for s in batch["seed"]]
        cond_generators = stream_generators(seeds, CONDITION_STREAM)
        cond = model.condition(batch_condition(model.config.conditioning, batch, cond_generators))
        if cond and drop_prob > 0:
            keep = torch.stack([torch.rand((), generator=g) >= drop_prob for g in cond_generators]).to(z0.device)
            cond = drop(cond, model.null_condition(len(seeds), z0.device), keep)
        return model.loss(z0, cond, stream_generators(seeds, NOISE_STREAM))


def drop(cond: Conditioning, null: Conditioning, keep: torch.Tensor) -> Conditioning:
    """The condition with the null one in place of the samples where keep (B,) is False (classifier-free
    guidance training); the null entries broadcast over the batch and the latent's size."""
    out = {}
    for name, value in cond.items():
        mask = keep.view(-1, *([1] * (value.ndim - 1)))
        out[name] = torch.where(mask, value, null[name].to(value.dtype).expand_as(value))
    return out


def trained_state(trainable: nn.Module, lora: bool) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps of the trained parts: all their weights, or with LoRA the adapters alone."""
    if not lora:
        return trainable.state_dict()
    return {name: p.detach() for name, p in trainable.named_parameters() if p.requires_grad}


def load_trained(trainable: nn.Module, saved: dict[str, torch.Tensor], lora: bool) -> None:
    if not lora:
        trainable.load_state_dict(saved)
        return
    params = {name: p for name, p in trainable.named_parameters() if p.requires_grad}
    if set(params) != set(saved):
        differ = sorted(set(params) ^ set(saved))[:3]
        raise CheckpointError(f"the checkpoint's adapters do not match the run's ({differ}); was its config edited?")
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value)

"""Classifier-free guidance (Ho & Salimans, 2022) as a wrapper that binds conditioning to a UNet.

The UNet is `unet(x_t, t, **conditioning) -> prediction`, conditioning a dict such as
{"context": (B, N, D) tokens, "concat": (B, C, h, w) maps, "y": (B,) labels}. The unconditional
version of every entry is given alongside (size-1 dims broadcast: a batch of 1 to B, a (1, C, 1, 1)
null map to (B, C, h, w); None stays None).
One forward runs on the batch [uncond; cond] (x and t doubled), as CompVis does, and
    out = out_u + scale * (out_c - out_u).
Guidance is applied to the raw prediction; for eps, x0 and v alike this equals guidance on eps,
since each is an affine function of the others at fixed x_t. scale = 1 is the conditional model;
it runs as a single conditional forward unless short_circuit=False.

Autoguidance (Karras et al., 2024, "Guiding a Diffusion Model with a Bad Version of Itself") puts a
weaker model of the same data in place of the unconditional branch, so it guides unconditional
models too:
    out = out_guide + scale * (out - out_guide),   both on the same condition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from ldmkit.errors import LdmkitError

Conditioning = Mapping[str, torch.Tensor | None]
Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _broadcast(name: str, cond: torch.Tensor | None, uncond: torch.Tensor | None) -> torch.Tensor | None:
    if cond is None and uncond is None:
        return None
    if cond is None or uncond is None:
        raise LdmkitError(f"conditioning '{name}' is given for only one of cond/uncond; give both or neither")
    if uncond.dim() == cond.dim() and all(u in (1, c) for u, c in zip(uncond.shape, cond.shape)):
        uncond = uncond.expand_as(cond)  # size-1 dims broadcast: a batch of 1, a constant map
    if uncond.shape != cond.shape:
        raise LdmkitError(
            f"unconditional '{name}' has shape {tuple(uncond.shape)} but the conditional one "
            f"{tuple(cond.shape)}; they must match (or have size 1 where they differ)"
        )
    return uncond


def conditioned(unet: Callable[..., torch.Tensor], cond: Conditioning) -> Model:
    """`model(x_t, t)` = unet(x_t, t, **cond): conditioning bound, no guidance."""
    cond = dict(cond)

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x, t, **cond)

    return model


def classifier_free_guidance(
    unet: Callable[..., torch.Tensor],
    cond: Conditioning,
    uncond: Conditioning,
    scale: float,
    short_circuit: bool = True,
    guide_at: Callable[[torch.Tensor], bool] | None = None,
) -> Model:
    """`model(x_t, t)` with guidance `scale`, from conditional and unconditional conditioning dicts.

    `guide_at(t)`: guide only the calls where it is true (guidance in a limited interval of noise
    levels, Kynkaenniemi et al. 2024, see `in_interval`); the others are one conditional call."""
    if set(cond) != set(uncond):
        raise LdmkitError(
            f"cond has keys {sorted(cond)} but uncond {sorted(uncond)}; give the unconditional version of each"
        )
    cond = dict(cond)
    uncond = {name: _broadcast(name, cond[name], uncond[name]) for name in cond}
    both = {
        name: None if cond[name] is None else torch.cat([uncond[name], cond[name]]) for name in cond
    }  # each (2B, ...): [uncond; cond]
    if scale == 1.0 and short_circuit:
        return conditioned(unet, cond)

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if guide_at is not None and not guide_at(t):
            return unet(x, t, **cond)
        for name, value in cond.items():
            if value is not None and value.shape[0] != x.shape[0]:
                raise LdmkitError(
                    f"conditioning '{name}' has batch {value.shape[0]} but x_t has {x.shape[0]}; they must match"
                )
        out = unet(torch.cat([x, x]), torch.cat([t, t]), **both)  # (2B, ...)
        out_uncond, out_cond = out.chunk(2)
        return out_uncond + scale * (out_cond - out_uncond)

    return guided


def autoguidance(
    unet: Callable[..., torch.Tensor],
    cond: Conditioning,
    guide: Callable[..., torch.Tensor],
    guide_cond: Conditioning,
    scale: float,
    guide_at: Callable[[torch.Tensor], bool] | None = None,
) -> Model:
    """`model(x_t, t)` guided by `guide`, a weaker model of the same latent space (an early checkpoint or a
    smaller UNet), each with its own conditioning dict (their conditioners are trained separately).
    `guide_at(t)`: as for classifier_free_guidance, one call of `unet` where it is false."""
    cond, guide_cond = dict(cond), dict(guide_cond)

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = unet(x, t, **cond)
        if guide_at is not None and not guide_at(t):
            return out
        weak = guide(x, t, **guide_cond)
        return weak + scale * (out - weak)

    return guided


def in_interval(schedule, low: float, high: float) -> Callable[[torch.Tensor], bool]:
    """`guide_at` for the noise levels sigma in (low, high] (sigma = sqrt((1 - abar) / abar) at t)."""
    from ldmkit.sampling.sigmas import SigmaTable

    if not 0 <= low < high:
        raise LdmkitError(f"a guidance interval needs 0 <= low < high, got ({low}, {high})")
    table = SigmaTable.of(schedule, "log")

    def guide_at(t: torch.Tensor) -> bool:
        return low < table.sigma(float(t.reshape(-1)[0])) <= high

    return guide_at

"""Checks of what the UNet is called with, each failure saying what to pass instead."""

from __future__ import annotations

import torch

from ldmkit.errors import LdmkitError
from ldmkit.unet.config import UNetConfig


class UNetInputError(LdmkitError, ValueError):
    """An input the UNet cannot take: a wrong shape, or a missing or unexpected conditioning."""


def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def check_size(cfg: UNetConfig, height: int, width: int) -> None:
    """Height and width must be positive multiples of 2 ** (levels - 1); name the nearest that are."""
    m = cfg.size_multiple
    for name, size in (("height", height), ("width", width)):
        if size % m or size < m:
            lower, upper = (size // m) * m, (size // m + 1) * m
            options = f"{lower} or {upper}" if lower else f"{upper}"
            raise UNetInputError(
                f"{name} {size} is not divisible by {m} (the UNet halves the size {cfg.levels - 1} times); "
                f"use {options}"
            )
    if height < cfg.smallest_size and width < cfg.smallest_size:
        raise UNetInputError(f"{height} x {width} is too small: the UNet's lowest level would be 1 x 1 pixel, too few "
                             f"for its GroupNorms; make one side {cfg.smallest_size} or more")


def check_inputs(
    cfg: UNetConfig,
    x: torch.Tensor,
    t: torch.Tensor | float | int,
    context: torch.Tensor | None,
    concat: torch.Tensor | None,
    y: torch.Tensor | None,
    context_optional: bool,
) -> torch.Tensor:
    """Validate one call of `UNet.forward`; return t as a (B,) tensor on x's device.

    `context_optional`: the model may run without context (its cross-attention then attends to
    the image tokens, which needs context_dim equal to every transformer's width, as in CompVis).
    """
    if x.dim() != 4:
        raise UNetInputError(f"x_t must be (B, C, H, W), got shape {_shape(x)}")
    b, c, h, w = x.shape
    if concat is not None:
        if concat.dim() != 4 or concat.shape[0] != b or concat.shape[2:] != x.shape[2:]:
            raise UNetInputError(f"concat must be (B, C_concat, H, W) = ({b}, C_concat, {h}, {w}) like x_t, "
                                 f"got shape {_shape(concat)}")
        if c + concat.shape[1] != cfg.in_channels:
            raise UNetInputError(f"x_t ({c} channels) and concat ({concat.shape[1]} channels) give "
                                 f"{c + concat.shape[1]} channels, but the UNet takes in_channels={cfg.in_channels}")
    elif c != cfg.in_channels:
        hint = (f"; pass the other {cfg.in_channels - c} channels as concat (B, {cfg.in_channels - c}, H, W)"
                if c < cfg.in_channels else "")
        raise UNetInputError(f"x_t has {c} channels, but the UNet takes in_channels={cfg.in_channels}{hint}")
    check_size(cfg, h, w)

    t = torch.as_tensor(t, device=x.device)
    if t.dim() == 0 or t.shape == (1,):
        t = t.reshape(1).expand(b)
    if t.shape != (b,):
        raise UNetInputError(f"t must be a scalar or have shape (B,) = ({b},), got shape {_shape(t)}")

    if cfg.context_dim is None:
        if context is not None:
            raise UNetInputError("this UNet has no cross-attention (use_spatial_transformer is false), so it "
                                 "cannot take context; drop it, or build the UNet with context_dim set")
    elif context is None:
        if not context_optional:
            raise UNetInputError(f"context (B, N, {cfg.context_dim}) is required: this UNet cross-attends to "
                                 f"context tokens of width context_dim={cfg.context_dim}")
    elif context.dim() != 3 or context.shape[0] != b or context.shape[2] != cfg.context_dim:
        raise UNetInputError(f"context must be (B, N, context_dim) = ({b}, N, {cfg.context_dim}), "
                             f"got shape {_shape(context)}")

    if cfg.num_classes is None:
        if y is not None:
            raise UNetInputError("this UNet has no class embedding (num_classes is null), so it cannot take y")
    elif y is None:
        raise UNetInputError(f"y (B,) class labels are required: this UNet has num_classes={cfg.num_classes}")
    elif y.shape != (b,) or y.is_floating_point() or y.is_complex():
        raise UNetInputError(f"y must be integer class labels of shape (B,) = ({b},), "
                             f"got {y.dtype} of shape {_shape(y)}")
    return t

"""Winograd F(4x4, 3x3) convolution: the fast float32 CPU path for 3x3 convolutions at inference.

A 3x3, stride-1, padding-1 convolution computes each 4x4 output tile from a 6x6 input tile.
Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
2016) transforms the input tile (B^T d B) and the filter (G g G^T) so that the output tile is
A^T [U * V] A: 36 products per tile and channel pair instead of 144. Summed over input channels
those products are 36 matrix products (tiles x C_in) @ (C_in x C_out), 4x fewer multiply-adds than
the direct convolution; the transforms are a few additions per element. The image is processed in
bands of tile rows, so every intermediate stays a few MB (cache-sized, no fresh page-faulting
buffers) whatever the image size.

Results differ from the direct convolution by rounding only: about 1e-5 relative to the output's
scale in float32 (the transforms' coefficients reach 8 and 1/24), far below an 8-bit pixel step.
"""

from __future__ import annotations

import threading
import weakref

import torch
from torch import nn

TILE = 4  # output tile side m; the input tile is m + 2
# Lavin & Gray's matrices for points 0, +-1, +-2 and infinity: B^T (6, 6) and A^T (4, 6) are small
# integers, exact in any float dtype; G (6, 3) is applied to the filters once per cached layer.
_BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float32)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                   dtype=torch.float32)
_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
BAND_BYTES = 4 << 20  # a band's transformed input: cache-sized (4 MB decoded fastest here, 16 MB 10-20 % slower)


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """(O, I, 3, 3) filters -> (36, I, O) float32, entry 6 * row + column of G g G^T.

    One matrix product in float32 with the Kronecker product G (x) G, so (G g G^T)[a, b] =
    sum_rc G[a, r] G[b, c] g[r, c]: ~0.1 s for the largest SD layer (the rounding of G's sixths and
    24ths, ~1e-7, is far below Winograd's own ~1e-5)."""
    o, i = weight.shape[:2]
    gg = torch.kron(_G, _G).to(weight.device, torch.float32)  # (36, 9): row 6 a + b, column 3 r + c
    u = weight.detach().to(torch.float32).reshape(o, i * 9)  # (O, I * 9), with the reshapes below: (O, I, 9)
    u = torch.matmul(gg, u.view(o, i, 9).transpose(1, 2))  # (O, 36, I)
    return u.permute(1, 2, 0).contiguous()  # (36, I, O)


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """conv2d(x, w, bias, padding=1) for 3x3 filters w given as u = transform_weight(w).

    x: (N, C, H, W), fastest in channels_last; returns (N, O, H, W) in channels_last.
    Every transform is one batched matrix product with a 6x6 (or 4x6) matrix: memory-bound, one pass.
    """
    n, c, h, w = x.shape
    if u.shape[:2] != (36, c):
        raise ValueError(f"transformed weight {tuple(u.shape)} does not fit {c} input channels")
    o = u.shape[2]
    bt, at = _BT.to(x), _AT.to(x)  # (no copy for float32 on CPU)
    th, tw = -(-h // TILE), -(-w // TILE)  # tiles per column and row
    wp = TILE * tw + 2
    band = max(1, min(th, BAND_BYTES // (36 * n * tw * max(c, o) * x.element_size())))
    x = x.permute(0, 2, 3, 1)  # (N, H, W, C), a view when x is channels_last
    out = x.new_empty(n, TILE * th, TILE * tw, o)  # (N, 4 th, 4 tw, O)
    slab = x.new_zeros(n, TILE * band + 2, wp, c)  # one band of input rows with the zero padding
    sn, sh, sw, _ = slab.stride()
    work = [x.new_empty(36 * n * band * tw * max(c, o)) for _ in range(2)]  # (two: each below glibc's mmap limit)
    y1 = x.new_empty(6 * TILE * n * band * tw * o)
    y = x.new_empty(TILE * TILE * n * band * tw * o)
    for r0 in range(0, th, band):
        tb = min(band, th - r0)
        t = n * tb * tw  # tiles in this band
        top = TILE * r0 - 1  # first input row of the band's slab (the padding row when r0 = 0)
        lo, hi = max(top, 0), min(top + TILE * tb + 2, h)
        slab[:, : lo - top].zero_()
        slab[:, lo - top: hi - top, 1: w + 1].copy_(x[:, lo:hi])
        slab[:, hi - top:].zero_()
        tiles = slab.as_strided((6, 6, n, tb, tw, c), (sh, sw, sn, TILE * sh, TILE * sw, 1))  # 6x6 tiles
        d = work[0][: 36 * t * c].view(6, 6 * t * c)
        d.view(6, 6, n, tb, tw, c).copy_(tiles)  # (row i, column j, N, tb, tw, C)
        r = work[1][: 36 * t * c].view(6, 6 * t * c)
        torch.matmul(bt, d, out=r)  # B^T over rows: (row a, column j, tiles, C)
        v = d.view(6, 6, t * c)
        torch.matmul(bt, r.view(6, 6, t * c), out=v)  # B^T over columns: (a, b, tiles, C)
        m = work[1][: 36 * t * o].view(6, 6, t, o)
        torch.bmm(v.view(36, t, c), u, out=m.view(36, t, o))  # (36, tiles, O)
        if bias is not None:
            m[1, 1] += bias  # A^T's column 1 is all ones: this adds the bias to every output
        y1b = y1[: 6 * TILE * t * o].view(6, TILE, t * o)
        torch.matmul(at, m.view(6, 6, t * o), out=y1b)  # A^T over columns: (a, 4 columns, tiles, O)
        yb = y[: TILE * TILE * t * o].view(TILE, TILE * t * o)
        torch.matmul(at, y1b.view(6, TILE * t * o), out=yb)  # A^T over rows: (4 rows, 4 columns, tiles, O)
        band_out = out[:, TILE * r0: TILE * (r0 + tb)].view(n, tb, TILE, tw, TILE, o)
        band_out.copy_(yb.view(TILE, TILE, n, tb, tw, o).permute(2, 3, 0, 4, 1, 5))
    if out.shape[1] != h or out.shape[2] != w:
        out = out[:, :h, :w].contiguous()
    return out.permute(0, 3, 1, 2)  # (N, O, H, W), channels_last


# Where Winograd wins on this CPU (2 cores, float32, measured against oneDNN's direct convolution): at
# >= 128 input and output channels once N * H * W * C_in * C_out reaches 2^23 (1.2-3x faster); below
# that, its fixed cost of ~15 tensor ops per call dominates (64 channels: 0.5-1x at any size).
MIN_CHANNELS = 128
MIN_WORK = 1 << 23


# The transformed filters are 4x the size of the weights (36 / 9 entries): kept for every layer of an
# 860 M-parameter UNet they would add ~6 GiB. A budget bounds them; the layers with the most positions
# per call (the most work per cached byte: the high-resolution ones) keep theirs, and the rest run the
# direct convolution, where Winograd would have to re-transform their filters on every call.
CACHE_BYTES = 512 << 20


class FilterCache:
    """Transformed filters of WinogradConv2d layers within `max_bytes`, by priority (positions per call)."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._held: dict[int, tuple[weakref.ref, int, int]] = {}  # id(layer) -> (layer, priority, bytes)
        self._lock = threading.RLock()  # (a collected layer's callback may run inside admit)

    def admit(self, layer: WinogradConv2d, priority: int, nbytes: int) -> bool:
        """Whether `layer` may hold `nbytes` of transformed filters, evicting lower-priority layers' if needed."""
        with self._lock:
            key = id(layer)
            if key in self._held:
                ref, old, size = self._held[key]
                self._held[key] = (ref, max(old, priority), size)
                return True
            if nbytes > self.max_bytes:
                return False
            while self.used + nbytes > self.max_bytes:
                victims = [(p, k) for k, (_, p, _) in self._held.items() if p < priority]
                if not victims:
                    return False
                self._evict(min(victims)[1])
            self._held[key] = (weakref.ref(layer, lambda _, k=key: self._forget(k)), priority, nbytes)
            self.used += nbytes
            return True

    def _evict(self, key: int) -> None:
        ref, _, size = self._held.pop(key)
        self.used -= size
        layer = ref()
        if layer is not None:
            layer._cache = None

    def _forget(self, key: int) -> None:  # a layer was garbage-collected
        with self._lock:
            if key in self._held:
                self.used -= self._held.pop(key)[2]

    def release(self, layer: WinogradConv2d) -> None:
        with self._lock:
            if id(layer) in self._held:
                self._evict(id(layer))


FILTERS = FilterCache()  # one budget per process, shared by every model it loads


class WinogradConv2d(nn.Conv2d):
    """An nn.Conv2d (3x3, stride 1, padding 1) that runs winograd_conv3x3 for float32 CPU inference.

    It holds the same Parameters as the conv it replaces (state_dict unchanged). The transformed
    weights are cached within FILTERS' budget (not pickled or deep-copied) and recomputed when the
    weight is replaced or changed in place by a tensor op (copy_, lerp_, load_state_dict: an EMA copy
    stays current); writes through `.data` bypass torch's version counter: call `clear_cache()` after
    those. Anything else runs the direct convolution: with gradients enabled, under autocast,
    torch.compile or a torch.func transform, in another dtype or on another device, below
    MIN_CHANNELS or MIN_WORK, or when the budget keeps this layer's filters out.
    """

    _cache: tuple[weakref.ref, int | None, torch.Tensor] | None = None

    @classmethod
    def replacing(cls, conv: nn.Conv2d) -> WinogradConv2d:
        new = cls.__new__(cls)
        new.__dict__.update(conv.__dict__)  # the same Parameters, buffers and hooks
        return new

    def clear_cache(self) -> None:
        FILTERS.release(self)
        self._cache = None

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_cache", None)
        return state

    def _transformed(self, x: torch.Tensor) -> torch.Tensor | None:
        """The transformed filters, or None where the budget gives them no room."""
        w = self.weight
        if not FILTERS.admit(self, x.shape[0] * x.shape[2] * x.shape[3], 36 * w.shape[0] * w.shape[1] * 4):
            return None
        version = None if w.is_inference() else w._version  # (inference tensors have no version counter)
        cache = self._cache
        if cache is None or cache[0]() is not w or cache[1] != version:
            cache = self._cache = (weakref.ref(w), version, transform_weight(w))
        return cache[2]

    def _applies(self, x: torch.Tensor) -> bool:
        return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32 == self.weight.dtype
                and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
                and not torch._C._are_functorch_transforms_active() and x.dim() == 4
                and min(self.in_channels, self.out_channels) >= MIN_CHANNELS
                and x[:, 0].numel() * self.in_channels * self.out_channels >= MIN_WORK)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self._transformed(x) if self._applies(x) else None
        if u is None:
            return super().forward(x)
        return winograd_conv3x3(x, u, self.bias)


def use_winograd(module: nn.Module) -> nn.Module:
    """Replace, in place, every plain 3x3 stride-1 padding-1 nn.Conv2d inside `module` with a WinogradConv2d."""
    for name, child in list(module.named_children()):
        if _eligible(child):
            setattr(module, name, WinogradConv2d.replacing(child))
        else:
            use_winograd(child)
    return module


def _eligible(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros")

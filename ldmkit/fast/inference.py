"""The fast inference path of a Pipeline: reduced-precision, channels_last and compiled UNet and decoder.

    (always)              exact attention shortcuts (fast/attention.py) and in-place first-stage blocks
                          (fast/inplace.py).

    dtype=torch.bfloat16  the UNet and the first stage's decoder hold bfloat16 weights in channels_last
                          layout (oneDNN's fastest CPU convolutions; AMX on recent Xeons) and compute in
                          bfloat16. The sampler, the schedule coefficients and the conditioner stay
                          float32: the UNet takes float32 x_t and returns a float32 prediction.
    (any dtype, CPU)      the decoder runs in channels_last: its float32 convolutions at 128-512 channels
                          and 64^2-256^2 pixels run 12-25 % faster than in NCHW (the float32 UNet's do
                          not: at 16^2-32^2 latents it is as fast or slower, so it stays NCHW).
    (float32, CPU)        every 3x3 stride-1 convolution of at least 128 channels and enough work (see
                          fast/winograd.py) runs as a Winograd F(4x4, 3x3) convolution: 4x fewer
                          multiply-adds, 1.2-3x faster than oneDNN's direct convolution here.
    compile=True          torch.compile of both (one graph per batch and image size, compiled on first
                          use). On CPU with inductor weight freezing: the weights become constants of the
                          compiled graph, prepacked once, which removes the weight re-layout eager oneDNN
                          convolutions repeat on every call. The model must not change afterwards.
                          The compiled code is cached on disk (compile_cache_dir()), so only the first
                          process on a machine pays the full compile of a shape; later ones trace the
                          model again and load the rest (benchmarks/sd_cpu.py times both).

bfloat16 has an 8-bit mantissa: its images differ from the float32 ones by about 1e-3 to 1e-2 (measured on
random-weight test models: see tests/fast/test_inference.py); compile alone keeps float32 results
to float tolerance. `float32` is the default and the reference.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ldmkit.errors import ConfigError
from ldmkit.fast.allocator import keep_freed_memory
from ldmkit.fast.attention import use_fast_attention
from ldmkit.fast.inplace import use_inplace_blocks
from ldmkit.fast.winograd import use_winograd

Fn = Callable[..., torch.Tensor]


def compile_cache_dir() -> Path:
    """Where torch.compile keeps its compiled code between processes: $LDMKIT_COMPILE_CACHE, else an explicit
    $TORCHINDUCTOR_CACHE_DIR, else ~/.cache/ldmkit/torch-compile (torch's own default, /tmp/torchinductor_USER,
    does not survive a reboot)."""
    chosen = os.environ.get("LDMKIT_COMPILE_CACHE") or os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen:
        return Path(chosen)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ldmkit" / "torch-compile"


def compile_for_inference(module: nn.Module | Fn, device: torch.device) -> Fn:
    """torch.compile for repeated inference calls at fixed shapes (weight freezing on CPU), its compiled code
    cached in compile_cache_dir()."""
    cache = compile_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the compile cache {cache}: {err.strerror}; set LDMKIT_COMPILE_CACHE to "
                          "a writable folder") from err
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)  # read by inductor when it compiles
    options = {"freezing": True} if device.type == "cpu" else None
    return torch.compile(module, dynamic=False, options=options)


def _in_dtype(fn: Fn, dtype: torch.dtype) -> Fn:
    """fn(x) with x cast to `dtype` (channels_last for images) and the result returned as float32."""

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return fn(x).float()

    return run


def tiny_decoder_for_inference(decoder: nn.Module, device: torch.device, dtype: torch.dtype = torch.float32) -> Fn:
    """decode(z) -> float32 images of a tiny decoder (autoencoder/tiny.py), in `dtype` and channels_last as the
    first stage's decoder above (it is small enough that Winograd would not pay)."""
    decoder.to(device=device, dtype=dtype, memory_format=torch.channels_last).eval()
    return _in_dtype(decoder, dtype)


def for_inference(model: nn.Module, device: torch.device, dtype: torch.dtype = torch.float32,
                  compile: bool = False) -> tuple[Fn, Fn]:
    """(unet, decode) callables of a LatentDiffusion for sampling, converted in place as described above.

    unet(x_t, t, **conditioning) -> prediction in x_t's dtype; decode(z) -> float32 images (not clamped).
    """
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, got {dtype}")
    keep_freed_memory()
    use_fast_attention(model)
    use_inplace_blocks(model.first_stage)
    unet: Fn = model.unet
    decode: Fn = model.decode
    latent = model.config.first_stage.kind != "identity"  # pixel space: decode is the identity
    if dtype != torch.float32:
        model.unet.to(dtype=dtype, memory_format=torch.channels_last)  # the UNet casts x_t and context itself
    channels_last = latent and (dtype != torch.float32 or device.type == "cpu")
    if channels_last:  # the decoding side only: conditioners that encode images (inpainting) keep their encoder
        stage = model.first_stage
        parts = [stage.post_quant_conv, stage.decoder] + ([stage.quantize] if stage.config.kind == "vq" else [])
        for part in parts:
            part.to(dtype=dtype, memory_format=torch.channels_last)
    if device.type == "cpu" and not compile:  # (its modules fall back to direct convs outside float32)
        use_winograd(model)
    if compile:
        unet = compile_for_inference(model.unet, device)
        if latent:
            decode = compile_for_inference(model.decode, device)
    if channels_last:
        decode = _in_dtype(decode, dtype)
    return unet, decode

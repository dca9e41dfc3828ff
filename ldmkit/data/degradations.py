"""Low-resolution inputs for super-resolution: x`factor` bicubic, or a random BSRGAN-style mix.

- "bicubic" (the paper's LDM-SR): antialiased bicubic downsampling, then 8-bit quantisation, so
  the training input looks like the LR PNG a user will give.
- "bsr" (the paper's LDM-BSR, after Zhang et al. 2021, "Designing a practical degradation model
  for deep blind image super-resolution"): in random order, a Gaussian blur with a random
  isotropic or anisotropic kernel, a second blur (half of the time), a downsampling to a random
  intermediate size with a random interpolation, Gaussian noise (per channel or grey) and JPEG
  compression at a random quality (Pillow); then a resize to the exact LR size with a random
  interpolation, a final JPEG half of the time, and 8-bit quantisation. Blur widths are given in
  HR pixels and scaled to the resolution the image has when the blur happens.

Every random choice of image i comes from its own torch.Generator, so a sample's LR image is a
function of its seed. Images are (B, 3, H, W) float tensors in [-1, 1]; H and W must be
multiples of the factor.
"""

from __future__ import annotations

import io
import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ldmkit.errors import ConfigError, LdmkitError, ShapeError

Degradation = Literal["bicubic", "bsr"]
RESAMPLE_MODES = ("bilinear", "bicubic", "area")  # the random interpolations of "bsr"
ISO_SIGMA = (0.2, 2.0)  # isotropic blur std, HR pixels
ANISO_SIGMA = (0.2, 3.0)  # each axis of an anisotropic blur, HR pixels
NOISE_SIGMA = (1 / 255, 25 / 255)  # Gaussian noise std on the [0, 1] scale
JPEG_QUALITY = (30, 95)


def quantize8(images: torch.Tensor) -> torch.Tensor:
    """Round [-1, 1] images to the 256 levels of an 8-bit file (and clamp)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def resize(images: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """(B, C, H, W) -> (B, C, *size); bilinear and bicubic are antialiased when they shrink."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if mode == "area":
        return F.interpolate(images, size=size, mode="area")
    shrink = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode=mode, align_corners=False, antialias=shrink)


def lr_size(height: int, width: int, factor: int) -> tuple[int, int]:
    if height % factor or width % factor:
        raise ShapeError(f"an HR image of {height}x{width} px cannot be downsampled x{factor} exactly; "
                         f"crop it to multiples of {factor} px")
    return height // factor, width // factor


def bicubic_downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, H/factor, W/factor): antialiased bicubic, quantised to 8 bits."""
    return quantize8(resize(images, lr_size(*images.shape[-2:], factor), "bicubic").clamp(-1, 1))


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high]."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _choice(generator: torch.Generator, options: tuple):
    return options[_randint(generator, 0, len(options) - 1)]


def gaussian_kernel(sigma_x: float, sigma_y: float, angle: float, max_radius: int) -> torch.Tensor:
    """(k, k) normalised Gaussian with axis stds sigma_x, sigma_y rotated by `angle` (radians)."""
    radius = max(1, min(max_radius, math.ceil(3 * max(sigma_x, sigma_y))))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = cos * x + sin * y, -sin * x + cos * y  # coordinates along the kernel's axes
    kernel = torch.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (kernel / kernel.sum()).float()


def random_blur(image: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Blur (3, h, w) with a random isotropic (p 0.5) or anisotropic Gaussian; `scale` = h / H_HR."""
    if float(torch.rand((), generator=generator)) < 0.5:
        sigma = _uniform(generator, *ISO_SIGMA)
        sx, sy, angle = sigma, sigma, 0.0
    else:
        sx, sy = _uniform(generator, *ANISO_SIGMA), _uniform(generator, *ANISO_SIGMA)
        angle = _uniform(generator, 0.0, math.pi)
    sx, sy = max(sx * scale, 0.1), max(sy * scale, 0.1)
    kernel = gaussian_kernel(sx, sy, angle, max_radius=min(image.shape[-2:]) - 1)  # (k, k)
    r = kernel.shape[-1] // 2
    padded = F.pad(image[None], (r, r, r, r), mode="reflect")  # (1, 3, h + 2r, w + 2r)
    weight = kernel.to(image)[None, None].expand(image.shape[0], 1, -1, -1)  # (3, 1, k, k)
    return F.conv2d(padded, weight, groups=image.shape[0])[0]


def random_noise(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise, independent per channel (p 0.5) or the same for all (grey noise)."""
    sigma = 2 * _uniform(generator, *NOISE_SIGMA)  # [0, 1] scale -> [-1, 1] units
    grey = float(torch.rand((), generator=generator)) < 0.5
    shape = (1, *image.shape[1:]) if grey else tuple(image.shape)
    noise = torch.randn(shape, generator=generator, dtype=image.dtype)
    return (image + sigma * noise).clamp(-1, 1)


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """(3, h, w) in [-1, 1] through a Pillow JPEG round trip at `quality`."""
    array = ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1).div(127.5).sub(1.0)


def bsr_degrade(image: torch.Tensor, factor: int, generator: torch.Generator) -> torch.Tensor:
    """One HR image (3, H, W) -> its randomly degraded LR version (3, H/factor, W/factor)."""
    height, width = image.shape[-2:]
    target = lr_size(height, width, factor)
    x = image.float()
    ops = ["blur", "blur2", "downsample", "noise", "jpeg"]
    for k in torch.randperm(len(ops), generator=generator).tolist():
        op = ops[k]
        if op in ("blur", "blur2"):
            if op == "blur" or float(torch.rand((), generator=generator)) < 0.5:
                x = random_blur(x, x.shape[-2] / height, generator)
        elif op == "downsample":  # to a random size between the LR and the current one
            s = _uniform(generator, 0.0, 1.0)
            size = tuple(max(t, round(c * (t / c) ** s)) for c, t in zip(x.shape[-2:], target))
            x = resize(x[None], size, _choice(generator, RESAMPLE_MODES))[0]
        elif op == "noise":
            x = random_noise(x, generator)
        else:
            x = jpeg(x, _randint(generator, *JPEG_QUALITY))
    x = resize(x[None], target, _choice(generator, RESAMPLE_MODES))[0].clamp(-1, 1)
    if float(torch.rand((), generator=generator)) < 0.5:
        x = jpeg(x, _randint(generator, *JPEG_QUALITY))
    return quantize8(x).to(image.dtype)


def degrade(images: torch.Tensor, factor: int, kind: Degradation = "bicubic",
            generators: list[torch.Generator] | None = None) -> torch.Tensor:
    """HR images (B, 3, H, W) -> LR images (B, 3, H/factor, W/factor); "bsr" needs one generator per image."""
    if kind == "bicubic":
        return bicubic_downsample(images, factor)
    if kind != "bsr":
        raise ConfigError(f"unknown degradation {kind!r}; use 'bicubic' or 'bsr'")
    if generators is None or len(generators) != images.shape[0]:
        raise LdmkitError(f"the 'bsr' degradation needs one torch.Generator per image ({images.shape[0]}), "
                          "e.g. ldmkit.diffusion.noise.seeded_generators(seeds)")
    return torch.stack([bsr_degrade(x.cpu(), factor, g) for x, g in zip(images, generators)]).to(images.device)

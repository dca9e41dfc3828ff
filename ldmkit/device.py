"""Where tensors run and in which precision: one home for device and autocast choices."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from ldmkit.errors import ConfigError

Precision = Literal["fp32", "bf16"]


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cpu', 'cuda', 'cuda:N' (checked to exist), or a torch.device."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device {name!r} is unknown; use auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {name!r}: this machine has no CUDA device (or torch has no CUDA); use "
                              "--device cpu (or auto)")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name!r}: there are only {count} CUDA devices (cuda:0 .. cuda:{count - 1})")
    elif device.type not in ("cpu", "mps"):
        raise ConfigError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on the given device, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)


def native_bf16(device: torch.device) -> str | None:
    """Why `device` multiplies bfloat16 matrices natively (AMX or AVX512-BF16 on a CPU, compute capability
    8+ on CUDA), or None where bfloat16 would be emulated and float32 is the faster choice."""
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return f"CUDA compute capability {major}.x" if major >= 8 else None
    if device.type != "cpu":
        return None
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:  # not Linux: stay with the reference precision
        return None
    for flag, name in (("amx_bf16", "AMX-BF16 matrix units"), ("avx512_bf16", "AVX512-BF16 instructions")):
        if flag in flags:
            return name
    return None


def dtype_name(dtype: torch.dtype) -> str:
    """'float32', 'bfloat16', ...: the name --dtype and the PNG metadata use."""
    return str(dtype).removeprefix("torch.")


def pick_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The inference dtype: a torch.dtype or its name; None -> float32 (the reference); 'auto' -> bfloat16
    where `device` has native bfloat16 matrix units (native_bf16), else float32."""
    if name is None:
        return torch.float32
    if isinstance(name, torch.dtype):
        return name
    if name == "auto":
        return torch.float32 if native_bf16(device) is None else torch.bfloat16
    if name not in DTYPES:
        raise ConfigError(f"dtype {name!r} is unknown; use one of {', '.join(DTYPE_CHOICES)}")
    return DTYPES[name]


def available_memory(device: torch.device) -> int | None:
    """Bytes `device` can still allocate: free CUDA memory, or Linux's MemAvailable; None where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024  # "12345 kB"
    except (OSError, KeyError, ValueError):
        return None

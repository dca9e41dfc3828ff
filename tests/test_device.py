"""Device and dtype choices (ldmkit/device.py): --dtype auto picks bfloat16 only where it is native."""

import builtins
import io

import pytest
import torch

from ldmkit import device as device_module
from ldmkit.device import native_bf16, pick_dtype
from ldmkit.errors import ConfigError

CPU = torch.device("cpu")


def fake_cpuinfo(monkeypatch, flags: str) -> None:
    real_open = builtins.open

    def fake(path, *a, **kw):
        if path == "/proc/cpuinfo":
            return io.StringIO(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n")
        return real_open(path, *a, **kw)

    monkeypatch.setattr(builtins, "open", fake)


@pytest.mark.parametrize(("flags", "reason"), [("avx2 avx512f", None), ("avx512f avx512_bf16", "AVX512-BF16"),
                                               ("amx_tile amx_bf16 avx512_bf16", "AMX-BF16")])
def test_auto_is_bfloat16_only_on_cpus_with_native_bfloat16(monkeypatch, flags, reason):
    fake_cpuinfo(monkeypatch, flags)
    found = native_bf16(CPU)
    assert (found is None) if reason is None else found.startswith(reason)
    assert pick_dtype("auto", CPU) == (torch.float32 if reason is None else torch.bfloat16)


def test_explicit_names_none_and_unknown(monkeypatch):
    fake_cpuinfo(monkeypatch, "avx512_bf16")
    assert pick_dtype(None, CPU) == torch.float32  # the Python API's default: the reference precision
    assert pick_dtype("float32", CPU) == torch.float32 and pick_dtype(torch.bfloat16, CPU) == torch.bfloat16
    with pytest.raises(ConfigError, match="use one of auto, float32, bfloat16, float16"):
        pick_dtype("bf16", CPU)


def test_no_cpuinfo_means_float32(monkeypatch):
    def missing(path, *a, **kw):
        raise OSError("no such file")

    monkeypatch.setattr(builtins, "open", missing)
    assert native_bf16(CPU) is None and pick_dtype("auto", CPU) == torch.float32
    assert device_module.native_bf16(torch.device("meta")) is None

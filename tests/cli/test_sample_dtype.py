"""`--dtype`: auto (bfloat16 where the CPU has it natively, said once), float32, bfloat16; and `--compile`."""

import numpy as np
import pytest
from PIL import Image

from ldmkit import device as device_module
from ldmkit.cli import main
from ldmkit.pipeline import read_params


def sample(tmp_path, model, name, *argv) -> np.ndarray:
    out = tmp_path / name
    assert main(["sample", model, "--class", "1", "--n", "2", "--steps", "3", "--seed", "4", "--device", "cpu",
                 "--out", str(out), *argv]) == 0
    return np.stack([np.asarray(Image.open(out / f"{4 + i:06d}.png")) for i in range(2)])  # (named by seed)


@pytest.mark.parametrize("native", [True, False], ids=["native-bf16", "no-bf16"])
def test_auto_follows_the_cpu_and_says_so_and_from_png_keeps_the_precision(tmp_path, tiny_models, capsys,
                                                                           monkeypatch, native):
    monkeypatch.setattr(device_module, "native_bf16", lambda device: "AVX512-BF16 instructions" if native else None)
    model = tiny_models["class"]
    auto = sample(tmp_path, model, "auto")
    said = capsys.readouterr().out
    expected = "bfloat16" if native else "float32"
    assert read_params(tmp_path / "auto" / "000004.png")["dtype"] == expected
    assert ("in bfloat16: --dtype auto, as this cpu has AVX512-BF16 instructions" in said) == native
    assert np.array_equal(auto, sample(tmp_path, model, "explicit", "--dtype", expected))
    assert main(["sample", "--from-png", str(tmp_path / "auto" / "000005.png"), "--out", str(tmp_path / "again")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / "000005.png")), auto[1])


def test_float32_and_bfloat16_differ_by_rounding(tmp_path, tiny_models):
    model = tiny_models["class"]
    fp32 = sample(tmp_path, model, "fp32", "--dtype", "float32").astype(int)
    bf16 = sample(tmp_path, model, "bf16", "--dtype", "bfloat16").astype(int)
    assert 0 < np.abs(fp32 - bf16).max() <= 64  # (an untrained 3-step model: rounding, not another image)


def test_an_unknown_dtype_is_one_line(tmp_path, tiny_models, cli_error):
    message = cli_error(["sample", tiny_models["class"], "--dtype", "bf16", "--out", str(tmp_path)])
    assert "--dtype" in message and "float32" in message


def test_compile_reaches_the_loader(tmp_path, tiny_models, monkeypatch):
    import ldmkit

    seen, load = {}, ldmkit.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return load(*args, **{**kwargs, "compile": False})  # (compiling is tests/fast/test_inference.py's)

    monkeypatch.setattr(ldmkit, "load", spy)
    sample(tmp_path, tiny_models["class"], "compiled", "--compile")
    assert seen["compile"] is True


def test_compile_with_feature_caching_is_one_line(tmp_path, tiny_models, cli_error):
    message = cli_error(["sample", tiny_models["class"], "--compile", "--cache-interval", "2", "--steps", "4",
                         "--out", str(tmp_path)])
    assert "compile" in message and "cache interval" in message

"""`ldmkit serve --lora`: adapters merged into a served model, recorded in its images, which `--from-png`
regenerates; and which served model a `--lora` goes to."""

import base64
import json

import numpy as np
import pytest
from PIL import Image

from ldmkit.cli import build_parser, main
from ldmkit.errors import ConfigError

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from ldmkit.cli.serve import _load  # noqa: E402
from ldmkit.serve.app import create_app  # noqa: E402
from ldmkit.serve.registry import lora_per_model  # noqa: E402
from ldmkit.serve.schemas import Limits  # noqa: E402


def served_png(tmp_path, lora_runs, *lora: str) -> Image.Image:
    args = build_parser().parse_args(["serve", f"base={lora_runs['base']}", "--device", "cpu",
                                      *[item for spec in lora for item in ("--lora", spec)]])
    app = create_app(_load(args), Limits(max_pixels=64 * 64, max_upload_bytes=1 << 20, max_images=4, queue_size=2,
                                         preview_every=0))
    with TestClient(app) as client:
        res = client.post("/sdapi/v1/txt2img", json={"seed": 3, "steps": 2, "batch_size": 2})
        assert res.status_code == 200, res.text
        described = client.get("/ldmkit/v1/models").json()
    path = tmp_path / f"served-{len(lora)}.png"
    path.write_bytes(base64.b64decode(res.json()["images"][1]))
    return Image.open(path), described


def test_a_served_model_with_a_lora_records_it_and_from_png_regenerates(tmp_path, lora_runs):
    plain, _ = served_png(tmp_path, lora_runs)
    adapted, described = served_png(tmp_path, lora_runs, f"base={lora_runs['lora']}:0.5")
    assert not np.array_equal(np.asarray(plain), np.asarray(adapted))
    recorded = json.loads(adapted.info["ldmkit"])["lora"]
    assert len(recorded) == 1 and recorded[0]["weight"] == 0.5
    assert recorded[0]["file"].startswith(str(lora_runs["lora"]))
    assert "lora" not in json.loads(plain.info["ldmkit"])
    model = next(m for m in described if m["name"] == "base")
    assert [(item["sha256"], item["weight"]) for item in model["lora"]] == [(recorded[0]["sha256"], 0.5)]
    assert main(["sample", "--from-png", adapted.filename, "--out", str(tmp_path / "again")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / "000004.png")), np.asarray(adapted))


def test_each_lora_names_its_model_when_several_are_served():
    assert lora_per_model(["a=x.safetensors:0.5", "b=y.safetensors"], ["a", "b"]) == \
        {"a": [("x.safetensors", 0.5)], "b": [("y.safetensors", 1.0)]}
    assert lora_per_model(["x.safetensors:2"], ["only"]) == {"only": [("x.safetensors", 2.0)]}
    with pytest.raises(ConfigError, match="2 models are served; say which one takes it as MODEL=LORA"):
        lora_per_model(["x.safetensors"], ["a", "b"])

"""`ldmkit serve --guide`: autoguidance for a served model, by both APIs, recorded for `--from-png`."""

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
from ldmkit.serve.registry import guide_per_model  # noqa: E402
from ldmkit.serve.schemas import Limits  # noqa: E402

from ..pipeline.conftest import tiny_ldm  # noqa: E402
from ..pipeline.test_autoguidance import save, weaker  # noqa: E402


def test_a_served_unconditional_model_with_a_guide_takes_guidance_and_from_png_regenerates(tmp_path):
    model, guide = save(tiny_ldm(), tmp_path / "m.safetensors"), save(weaker(tiny_ldm()), tmp_path / "g.safetensors")
    args = build_parser().parse_args(["serve", model, "--guide", guide, "--device", "cpu", "--dtype", "float32"])
    app = create_app(_load(args), Limits(max_pixels=64 * 64, max_upload_bytes=1 << 20, max_images=4, queue_size=2,
                                         preview_every=0))
    with TestClient(app) as client:
        described = client.get("/ldmkit/v1/models").json()[0]
        res = client.post("/sdapi/v1/txt2img", json={"seed": 3, "steps": 2, "cfg_scale": 2, "width": 16,
                                                     "height": 16})
        assert res.status_code == 200, res.text
        unsent = client.post("/sdapi/v1/txt2img", json={"seed": 3, "steps": 2, "width": 16, "height": 16})
        assert json.loads(unsent.json()["info"])["cfg_scale"] == 2.0  # autoguidance's default, not A1111's 7
    assert described["guidance"] and described["guidance_default"] == 2.0 and described["guide"]["checkpoint"] == guide
    path = tmp_path / "served.png"
    path.write_bytes(base64.b64decode(res.json()["images"][0]))
    params = json.loads(Image.open(path).info["ldmkit"])
    assert params["guidance"] == 2 and params["guide"]["checkpoint"] == guide
    assert "cfg_scale" not in json.loads(res.json()["info"]).get("ignored", [])
    assert main(["sample", "--from-png", str(path), "--out", str(tmp_path / "again")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / "000003.png")), np.asarray(Image.open(path)))


def test_each_guide_names_its_model_and_a_model_has_one():
    assert guide_per_model(["a=g.safetensors"], ["a", "b"]) == {"a": "g.safetensors", "b": None}
    with pytest.raises(ConfigError, match="say which one takes it as MODEL=GUIDE"):
        guide_per_model(["g.safetensors"], ["a", "b"])
    with pytest.raises(ConfigError, match="a model has one guide"):
        guide_per_model(["g.safetensors", "h.safetensors"], ["a"])

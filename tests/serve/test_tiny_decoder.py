"""`ldmkit serve --tiny-decoder`: a served model's images decoded by a tiny decoder, recorded for `--from-png`."""

import base64
import json

import numpy as np
import pytest
from PIL import Image

from ldmkit.cli import build_parser, main
from ldmkit.errors import ConfigError
from ldmkit.interop.tiny_decoder import save_tiny_decoder

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from ldmkit.cli.serve import _load  # noqa: E402
from ldmkit.serve.app import create_app  # noqa: E402
from ldmkit.serve.registry import tiny_decoder_per_model  # noqa: E402
from ldmkit.serve.schemas import Limits  # noqa: E402

from ..pipeline.conftest import tiny_ldm  # noqa: E402
from ..pipeline.test_autoguidance import save  # noqa: E402
from ..pipeline.test_tiny_decoder import tiny_for  # noqa: E402


def test_a_served_model_decodes_with_its_tiny_decoder_and_from_png_regenerates(tmp_path):
    model = save(tiny_ldm(), tmp_path / "m.safetensors")
    save_tiny_decoder(tiny_for(tiny_ldm(), scale=0.5), tmp_path / "t.safetensors")
    tiny = str(tmp_path / "t.safetensors")
    args = build_parser().parse_args(["serve", model, "--tiny-decoder", tiny, "--device", "cpu", "--dtype", "float32"])
    app = create_app(_load(args), Limits(max_pixels=64 * 64, max_upload_bytes=1 << 20, max_images=4, queue_size=2,
                                         preview_every=0))
    with TestClient(app) as client:
        described = client.get("/ldmkit/v1/models").json()[0]
        res = client.post("/sdapi/v1/txt2img", json={"seed": 3, "steps": 2, "width": 16, "height": 16})
        assert res.status_code == 200, res.text
    assert described["tiny_decoder"]["file"] == str(tmp_path / "t.safetensors")
    path = tmp_path / "served.png"
    path.write_bytes(base64.b64decode(res.json()["images"][0]))
    assert json.loads(Image.open(path).info["ldmkit"])["tiny_decoder"]["path"] == tiny
    assert main(["sample", "--from-png", str(path), "--out", str(tmp_path / "again")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / "000003.png")), np.asarray(Image.open(path)))


def test_each_tiny_decoder_names_its_model_and_a_model_has_one():
    assert tiny_decoder_per_model(["b=t.safetensors"], ["a", "b"]) == {"a": None, "b": "t.safetensors"}
    with pytest.raises(ConfigError, match="say which one takes it as MODEL=PATH"):
        tiny_decoder_per_model(["t.safetensors"], ["a", "b"])
    with pytest.raises(ConfigError, match="a model has one tiny decoder"):
        tiny_decoder_per_model(["t.safetensors", "u.safetensors"], ["a"])

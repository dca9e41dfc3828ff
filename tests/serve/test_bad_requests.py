"""Bad requests: each gets a 4xx with a JSON message that says what is wrong, never a traceback, and the
server goes on serving. (The test client's limits: 128 x 128 px, 1 MiB per upload, 8 images.)"""

import base64
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from .conftest import png64

SMALL = png64(Image.new("RGB", (16, 16), (1, 2, 3)))
MASK = png64(Image.new("L", (16, 16), 255))
BLACK = png64(Image.new("L", (16, 16), 0))  # an empty mask: nothing to fill
BIG = png64(Image.new("RGB", (200, 200)))  # 40000 px > 128 x 128
HUGE = base64.b64encode(np.random.default_rng(0).integers(0, 255, 900_000, dtype=np.uint8).tobytes() * 2).decode()
RGB_MAP = png64(Image.new("RGB", (16, 16)))
HIGH_IDS = png64(Image.fromarray(np.full((16, 16), 50, np.uint8), "L"))


def png_header(width: int, height: int) -> str:
    """A PNG file that says it is width x height px (no pixels follow), base64: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"")) +
                            chunk(b"IEND", b"")).decode()


BOMB = png_header(30000, 30000)  # over Pillow's own limit (which Image.open checks) as well as the server's
T2I, I2I, GEN = "/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/ldmkit/v1/generate"

CASES = [  # (path, JSON body or raw bytes, status, part of the message)
    (T2I, {"steps": 0}, 422, "steps: Input should be greater than or equal to 1"),
    (T2I, {"steps": "many"}, 422, "steps"),
    (T2I, b'{"cfg_scale": NaN}', 422, "cfg_scale"),
    (T2I, b'{"prompt": "unclosed', 422, "JSON"),
    (T2I, b'{"steps": 4,', 422, "the body is not valid JSON (at character 12): Expecting property name"),
    (T2I, {"width": 100000}, 422, "width"),
    (T2I, {"prompt": "x", "width": 256, "height": 256}, 413, "over the server's limit of 16384 pixels"),
    (T2I, {"prompt": "x", "width": 17}, 422, "width 17 px is not a multiple"),
    (T2I, {"sampler_name": "Bogus a"}, 422, "sampler 'Bogus a' is not available"),
    (T2I, {"sampler_name": "DDIM", "scheduler": "Karras"}, 422, "the Karras schedule is for"),
    (T2I, {"scheduler": "exponential"}, 422, "scheduler 'exponential'"),
    (T2I, {"override_settings": {"sd_model_checkpoint": "/etc/passwd"}}, 422, "is not served here"),
    (T2I, {"batch_size": 8, "n_iter": 8}, 422, "over the server's limit of 8"),
    (T2I, {"override_settings": {"sd_model_checkpoint": "inpaint"}}, 422, "use /sdapi/v1/img2img with a mask"),
    (T2I, {"prompt": "a cat", "override_settings": {"sd_model_checkpoint": "none"}}, 422, "takes no prompt"),
    (T2I, {"override_settings": {"sd_model_checkpoint": "layout"}}, 422, "use POST /ldmkit/v1/generate"),
    (T2I, {"prompt": "durian", "override_settings": {"sd_model_checkpoint": "class"}}, 422,
     "class 'durian' is unknown"),
    (T2I, {"prompt": "x", "negative_prompt": "y", "cfg_scale": 1}, 422, "set guidance above 1"),
    (I2I, {"init_images": []}, 422, "init_images"),
    (I2I, {"init_images": ["not base64 at all!"]}, 422, "init_images[0] is not valid base64"),
    (I2I, {"init_images": [base64.b64encode(b"hello").decode()]}, 422, "init_images[0] is not an image"),
    (I2I, {"init_images": [BIG]}, 413, "over the limit of 16384 pixels"),
    (I2I, {"init_images": [BOMB]}, 413, "init_images[0] is 30000x30000 px, over the limit of 16384 pixels per image"),
    (I2I, {"init_images": [HUGE]}, 413, "over the upload limit"),
    (I2I, {"init_images": [SMALL], "override_settings": {"sd_model_checkpoint": "inpaint"}}, 422, "send a mask"),
    (I2I, {"init_images": [SMALL], "denoising_strength": 1.5}, 422, "denoising_strength"),
    (GEN, {"steps": 2, "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    (GEN, {"model": "../../etc/passwd"}, 422, "is not served here"),
    (GEN, {"model": "low_res"}, 422, "does upscale, not generate"),
    (GEN, {"model": "class", "prompt": "x"}, 422, "'prompt' is for text models"),
    (GEN, {"model": "class", "class": 7}, 422, "class 7 does not exist"),
    (GEN, {"model": "text", "sampler": "plms", "eta": 0.5}, 422, "has no eta"),
    (GEN, {"model": "text", "sampler": "ddim", "eta": 5}, 422, "eta must be a number in [0, 1] for ddim, got 5.0"),
    (GEN, {"model": "text", "sampler": "euler_a", "eta": -0.5}, 422, "eta must be a number >= 0, got -0.5"),
    (T2I, {"sampler_name": "DDIM", "eta": 5}, 422, "eta must be a number in [0, 1] for ddim, got 5.0; use 0"),
    (I2I, {"init_images": [SMALL], "mask": BLACK, "override_settings": {"sd_model_checkpoint": "inpaint"}}, 422,
     "the mask is empty (all black): nothing to inpaint; white (>= 50 % grey) marks the part to fill"),
    (GEN, {"model": "text", "sampler": "ddim", "karras": True}, 422, "Karras"),
    (GEN, {"model": "text", "sampler": "dpm-fast"}, 422, "sampler"),
    (GEN, {"model": "text", "n": 100}, 422, "over the server's limit of 8"),
    (GEN, {"model": "text", "seed": -5}, 422, "seed"),
    (GEN, {"model": "text", "strength": 0.5}, 422, "strength needs an init image"),
    (GEN, {"model": "none", "init_image": SMALL, "strength": 2}, 422, "strength"),
    (GEN, {"model": "none", "guidance": 3}, 422, "needs a conditional model"),
    (GEN, {"model": "none", "init_image": BOMB}, 413, "init_image is 30000x30000 px, over the limit of 16384 pixels"),
    (GEN, {"model": "class", "guidance_interval": [0.2, 0.8]}, 422, "set guidance above 1"),
    (GEN, {"model": "class", "guidance": 3, "guidance_interval": [0.8, 0.2]}, 422, "0 <= low < high"),
    (GEN, {"model": "class", "guidance": 3, "guidance_interval": [0.2]}, 422, "guidance_interval: List should have"),
    (GEN, b'{"model": "class", "guidance": 3, "guidance_interval": [0, Infinity]}', 422,
     "guidance_interval.1: Input should be a finite number"),
    (GEN, {"model": "class", "guidance": 3, "guidance_interval": [-1, 2]}, 422, "guidance_interval.0"),
    (GEN, {"model": "text", "cache_interval": 0}, 422, "cache_interval: Input should be greater than or equal to 1"),
    (GEN, {"model": "text", "cache_interval": 1.5}, 422, "cache_interval: Input should be a valid integer"),
    (GEN, {"model": "layout", "steps": 1, "layout": {"boxes": [[0, 0, 1, 1]], "labels": [99]}}, 422,
     "box labels must be in [0, 10)"),
    (GEN, {"model": "layout", "layout": {"boxes": [[0, 0, 2, 1]], "labels": [1]}}, 422, "less than or equal to 1"),
    (GEN, {"model": "semantic", "label_map": RGB_MAP}, 422, "must be single-channel"),
    (GEN, {"model": "semantic", "label_map": HIGH_IDS}, 422, "holds class id 50"),
    (GEN, {"model": "semantic"}, 422, "needs a label map"),
    ("/ldmkit/v1/upscale", {"image": SMALL, "model": "text"}, 422, "does generate, not upscale"),
    ("/ldmkit/v1/inpaint", {"image": SMALL, "mask": png64(Image.new("L", (8, 8)))}, 422, "give a mask of the image's"),
    ("/ldmkit/v1/inpaint", {"image": SMALL}, 422, "mask: Field required"),
    ("/ldmkit/v1/inpaint", {"image": SMALL, "mask": BLACK}, 422, "the mask is empty (all black): nothing to inpaint"),
    ("/ldmkit/v1/upscale", {"image": SMALL, "overlap": 1000}, 422,
     "overlap must be a whole number of LR pixels in 0 .. 63 (less than the tile of 64), got 1000"),
    ("/ldmkit/v1/upscale", {"image": SMALL, "tile": 8, "overlap": 8}, 422, "in 0 .. 7 (less than the tile of 8)"),
    ("/ldmkit/v1/upscale", {"image": SMALL, "tile": 0}, 422, "tile: Input should be greater than or equal to 1"),
    ("/sdapi/v1/options", {"sd_model_checkpoint": "nope"}, 422, "is not served here"),
]


@pytest.mark.parametrize("path, body, status, message", CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_a_bad_request_is_a_4xx_with_a_clear_json_message(client, path, body, status, message):
    if isinstance(body, bytes):
        res = client.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        res = client.post(path, json=body)
    assert res.status_code == status, res.text[:300]
    assert res.headers["content-type"] == "application/json"
    error = res.json()["error"]
    assert message in error and "Traceback" not in res.text and len(res.text) < 4000
    assert client.get("/ldmkit/v1/models").status_code == 200  # still serving


@pytest.mark.parametrize("path", [GEN, T2I, "/sdapi/v1/options"])
@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
def test_a_json_body_not_labelled_as_json_is_told_the_header_to_send(client, path, content_type):
    headers = {"Content-Type": content_type} if content_type else {}  # (curl -d sends a form's type)
    res = client.post(path, content=b'{"steps": 4}', headers=headers)
    assert res.status_code == 422 and res.headers["content-type"] == "application/json"
    error = res.json()["error"]
    assert "send it with the header 'Content-Type: application/json'" in error
    assert (f"Content-Type: {content_type})" if content_type else "no Content-Type") in error


def test_limits_that_depend_on_the_request(registry):
    from ldmkit.serve.schemas import Limits

    from .conftest import make_client

    limits = Limits(max_pixels=48 * 48, max_upload_bytes=1 << 20, max_images=2, queue_size=2, preview_every=0)
    with make_client(registry, limits=limits) as client:
        res = client.post("/ldmkit/v1/upscale", json={"image": SMALL, "steps": 1})
        assert res.status_code == 413 and "the upscaled image would be 64x64 px" in res.json()["error"]
        res = client.post("/ldmkit/v1/generate", content=b"{" + b" " * (5 << 20) + b"}",
                          headers={"Content-Type": "application/json"})
        assert res.status_code == 413 and "request body is over" in res.json()["error"]
        assert client.get("/ldmkit/v1/models").status_code == 200


def test_an_unforeseen_error_is_a_500_without_a_traceback_and_the_server_goes_on(client, monkeypatch):
    model = client.app.state.ldmkit.registry.get("none")

    def broken(*args, **kwargs):
        raise RuntimeError("a bug deep inside")

    monkeypatch.setattr(type(model.pipe), "__call__", broken)
    res = client.post("/ldmkit/v1/generate", json={"model": "none", "steps": 1})
    assert res.status_code == 500 and res.json()["error"].startswith("internal error (RuntimeError)")
    assert "deep inside" not in res.text and "Traceback" not in res.text
    monkeypatch.undo()
    assert client.post("/ldmkit/v1/generate", json={"model": "none", "steps": 1}).status_code == 200


def test_unknown_routes_and_jobs_are_json_404s(client):
    for path in ("/nope", "/ldmkit/v1/jobs/0123"):
        res = client.get(path)
        assert res.status_code == 404 and res.json()["error"]


def test_a_model_name_given_twice_is_an_error_but_file_names_are_made_unique(tiny_models, capsys):
    from ldmkit.cli import main
    from ldmkit.serve.registry import model_names

    none, cls = tiny_models["none"], tiny_models["class"]
    assert main(["serve", "--port", "0", f"none={none}", f"none={cls}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ldmkit serve: error: the model name 'none' is given twice "
                                                   f"(none={none} and none={cls}); give each served model its own")
    assert model_names([none, none]) == [("none", none), ("none-2", none)]  # unnamed: suffixes
    assert model_names([none, f"none={cls}"]) == [("none-2", none), ("none", cls)]  # the given name wins

"""The A1111-compatible API on tiny untrained models: shapes, names, sampler mapping, and that a served
image is the one `ldmkit sample` makes, which `--from-png` regenerates."""

import base64
import json

import numpy as np
import pytest
from PIL import Image

from ldmkit.cli import main
from ldmkit.serve.a1111 import SAMPLERS, resolve_sampler

from .conftest import decoded, png64


def txt2img(client, **fields):
    res = client.post("/sdapi/v1/txt2img", json=fields)
    assert res.status_code == 200, res.text
    return res.json()


def test_txt2img_answers_in_a1111s_shape_with_ldmkit_metadata(client):
    out = txt2img(client, prompt="red apple", negative_prompt="green", seed=7, steps=3, cfg_scale=2.5,
                  batch_size=2, n_iter=2, sampler_name="Euler a", restore_faces=True, styles=[])
    assert set(out) == {"images", "parameters", "info"} and len(out["images"]) == 4
    info = json.loads(out["info"])
    assert info["all_seeds"] == [7, 8, 9, 10] and info["seed"] == 7 and info["sampler_name"] == "Euler a"
    assert info["sd_model_name"] == "text" and info["width"] == info["height"] == 16 and info["cfg_scale"] == 2.5
    assert info["ignored"] == ["restore_faces"] and len(info["infotexts"]) == 4
    assert "Steps: 3, Sampler: Euler a, CFG scale: 2.5, Seed: 8, Size: 16x16" in info["infotexts"][1]
    assert out["parameters"]["prompt"] == "red apple" and out["parameters"]["n_iter"] == 2
    image, text = decoded(out["images"][1])
    params = json.loads(text["ldmkit"])
    assert image.size == (16, 16) and params["seed"] == 8 and params["sampler"] == "euler_a"
    assert params["condition"] == "red apple" and params["negative"] == "green" and params["guidance"] == 2.5
    assert text["parameters"] == info["infotexts"][1]  # what A1111's own tools read


def test_a_random_seed_is_drawn_and_reported(client):
    info = json.loads(txt2img(client, prompt="x", steps=1, seed=-1, cfg_scale=1)["info"])
    assert 0 <= info["seed"] < 2**32 and info["all_seeds"] == [info["seed"]]


def test_sampler_names_map_to_ldmkit_samplers():
    assert resolve_sampler("DPM++ 2M Karras", None) == ("dpmpp_2m", True, "DPM++ 2M Karras")
    assert resolve_sampler("dpm++ 2m", "Karras") == ("dpmpp_2m", True, "DPM++ 2M")
    assert resolve_sampler("k_euler_a", None) == ("euler_a", False, "Euler a")
    assert resolve_sampler("ddim", "automatic") == ("ddim", False, "DDIM")
    assert resolve_sampler(None, None) == ("euler_a", False, "Euler a")  # ldmkit's default, not A1111's Euler
    assert {SAMPLERS[name][0] for name in SAMPLERS} == {"dpmpp_2m", "euler_a", "euler", "heun", "ddim", "plms", "ddpm"}


def test_listing_endpoints(client):
    models = client.get("/sdapi/v1/sd-models").json()
    text = next(m for m in models if m["model_name"] == "text")
    assert text["title"] == f"text [{text['hash']}]" and len(text["sha256"]) == 64
    assert text["filename"] == "text.safetensors"  # the file's name, never its path
    samplers = {s["name"]: s for s in client.get("/sdapi/v1/samplers").json()}
    assert samplers["DPM++ 2M Karras"]["options"] == {"scheduler": "karras"}
    assert "euler_a" in samplers["Euler a"]["aliases"]
    assert [s["label"] for s in client.get("/sdapi/v1/schedulers").json()] == ["Automatic", "Karras"]
    idle = client.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["current_image"] is None and idle["state"]["job_count"] == 0
    assert client.post("/sdapi/v1/interrupt").json() == {}


def test_options_choose_the_checkpoint_for_every_a1111_client(client):
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("text [")
    res = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "class", "CLIP_stop_at_last_layers": 2})
    assert res.status_code == 200 and res.json()["ignored"] == ["CLIP_stop_at_last_layers"]
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("class [")
    info = json.loads(txt2img(client, prompt="banana", steps=2, cfg_scale=2)["info"])  # the prompt names the class
    assert info["sd_model_name"] == "class"
    info = json.loads(txt2img(client, prompt="", steps=2, override_settings={"sd_model_checkpoint": "none"})["info"])
    assert info["sd_model_name"] == "none" and info["ignored"] == [] and info["cfg_scale"] == 1.0


def test_ignored_lists_only_the_fields_the_client_sent(client):
    unconditional = {"prompt": "", "steps": 1, "override_settings": {"sd_model_checkpoint": "none"}}
    assert json.loads(txt2img(client, **unconditional)["info"])["ignored"] == []  # no cfg_scale sent
    info = json.loads(txt2img(client, **unconditional, cfg_scale=7)["info"])
    assert info["ignored"] == ["cfg_scale"] and info["cfg_scale"] == 1.0
    image, mask = png64(Image.new("RGB", (16, 16))), png64(Image.new("L", (16, 16), 255))
    inpaint = {"init_images": [image], "mask": mask, "steps": 1, "cfg_scale": 1,
               "override_settings": {"sd_model_checkpoint": "inpaint"}}
    for extra, ignored in (({}, []), ({"denoising_strength": 0.5}, ["denoising_strength"])):
        res = client.post("/sdapi/v1/img2img", json={**inpaint, **extra})
        assert res.status_code == 200, res.text
        assert json.loads(res.json()["info"])["ignored"] == ignored


def test_img2img_and_its_mask_keep_the_unmasked_pixels(client):
    init = Image.new("RGB", (16, 16), (200, 40, 40))
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (4, 4, 12, 12))
    res = client.post("/sdapi/v1/img2img", json={"init_images": [png64(init)], "mask": png64(mask), "prompt": "x",
                                                "denoising_strength": 0.6, "steps": 4, "seed": 1, "cfg_scale": 1})
    assert res.status_code == 200, res.text
    out = res.json()
    assert "init_images" not in out["parameters"]  # as A1111 without include_init_images
    image, text = decoded(out["images"][0])
    pixels = np.asarray(image.convert("RGB"))
    assert (pixels[:4] == (200, 40, 40)).all() and not (pixels[4:12, 4:12] == (200, 40, 40)).all()
    params = json.loads(text["ldmkit"])
    assert params["strength"] == 0.6 and params["inputs"]["init_image_sha256"]
    assert json.loads(out["info"])["denoising_strength"] == 0.6


def test_img2img_with_a_mask_on_an_inpainting_model_inpaints(client):
    init = Image.new("RGB", (16, 16), (10, 200, 10))
    mask = Image.new("L", (16, 16), 255)
    mask.paste(0, (0, 0, 16, 8))
    res = client.post("/sdapi/v1/img2img", json={
        "init_images": ["data:image/png;base64," + png64(init)], "mask": png64(mask), "batch_size": 2, "steps": 2,
        "seed": 4, "cfg_scale": 1, "override_settings": {"sd_model_checkpoint": "inpaint"}})
    assert res.status_code == 200, res.text
    images = [decoded(data) for data in res.json()["images"]]
    assert [json.loads(text["ldmkit"])["seed"] for _, text in images] == [4, 5]
    assert all(json.loads(text["ldmkit"])["task"] == "inpaint" for _, text in images)
    assert (np.asarray(images[0][0].convert("RGB"))[:8] == (10, 200, 10)).all()
    assert json.loads(res.json()["info"])["ignored"] == []  # (no denoising_strength sent)


@pytest.mark.parametrize("sampler_name, cli", [("DDIM", ["--sampler", "ddim"]),
                                               ("DPM++ 2M Karras", ["--sampler", "dpmpp_2m", "--karras"])])
def test_a_served_image_is_ldmkit_samples_and_regenerates_from_its_png(client, tiny_models, tmp_path, sampler_name,
                                                                       cli):
    out = txt2img(client, prompt="red apple", seed=3, steps=4, cfg_scale=2.0, batch_size=2, sampler_name=sampler_name)
    served = [np.asarray(decoded(data)[0]) for data in out["images"]]
    argv = ["sample", tiny_models["text"], "--prompt", "red apple", "--n", "2", "--seed", "3", "--steps", "4",
            "--guidance", "2", "--device", "cpu", "--out", str(tmp_path / "cli"), *cli]
    assert main(argv) == 0
    for i, pixels in enumerate(served):  # bit for bit
        assert np.array_equal(pixels, np.asarray(Image.open(tmp_path / "cli" / f"{3 + i:06d}.png")))
    (tmp_path / "served.png").write_bytes(base64.b64decode(out["images"][1]))
    assert main(["sample", "--from-png", str(tmp_path / "served.png"), "--out", str(tmp_path / "again")]) == 0
    assert np.array_equal(served[1], np.asarray(Image.open(tmp_path / "again" / "000004.png")))


def test_an_img2img_png_names_what_from_png_needs(client, tmp_path, capsys):
    init = png64(Image.new("RGB", (16, 16), (90, 90, 90)))
    out = client.post("/sdapi/v1/img2img", json={"init_images": [init], "prompt": "x", "steps": 2, "cfg_scale": 1})
    (tmp_path / "served.png").write_bytes(base64.b64decode(out.json()["images"][0]))
    assert main(["sample", "--from-png", str(tmp_path / "served.png"), "--out", str(tmp_path / "again")]) == 2
    assert "records no file for its init image" in capsys.readouterr().err

"""The native endpoints: every model kind and task with the CLI's options, the same images as the CLI,
server-sent progress with previews, and the job listing."""

import base64
import json

import numpy as np
from PIL import Image

from ldmkit.cli import main

from .conftest import decoded, png64


def generate(client, **body):
    res = client.post("/ldmkit/v1/generate", json=body)
    assert res.status_code == 200, res.text
    return res.json()["images"]


def pixels(item) -> np.ndarray:
    return np.asarray(decoded(item["png"])[0].convert("RGB"))


def test_models_describe_what_each_takes(client):
    models = {m["name"]: m for m in client.get("/ldmkit/v1/models").json()}
    assert {m["task"] for m in models.values()} == {"generate", "upscale", "inpaint"}
    assert models["class"]["classes"] == ["apple", "banana", "cherry"] and models["class"]["negative"] == "class"
    assert models["text"]["negative"] == "prompt" and models["none"]["guidance"] is False
    assert models["layout"]["layout"] == {"num_classes": 10, "max_boxes": 4}
    assert models["semantic"]["semantic"] == {"num_classes": 11} and models["low_res"]["upscale"] == {"factor": 4}
    assert "dpmpp_2m" in models["text"]["karras_samplers"] and "ddim" in models["text"]["eta_samplers"]


def test_every_condition_kind(client):
    unconditional = generate(client, model="none", steps=2, n=2)
    assert [item["seed"] for item in unconditional] == [0, 1]
    classes = generate(client, model="class", **{"class": ["banana", 0]}, n=3, steps=2, guidance=2.0,
                       negative_class="cherry")
    assert [item["parameters"]["condition"] for item in classes] == [1, 0, 1]  # cycled, as repeated --class
    assert classes[0]["parameters"]["negative"] == 2
    texts = generate(client, model="text", prompt=["red apple", "hot dog"], n=2, steps=2, sampler="euler",
                     karras=True)
    assert [item["parameters"]["condition"] for item in texts] == ["red apple", "hot dog"]
    assert texts[0]["parameters"]["karras"] is True
    layout = {"boxes": [[0.1, 0.1, 0.6, 0.5]], "labels": [3]}
    boxes = generate(client, model="layout", layout=layout, steps=2, guidance=2.0)
    condition = boxes[0]["parameters"]["condition"]
    assert condition["labels"] == [3] and np.allclose(condition["boxes"], layout["boxes"])
    ids = np.zeros((8, 24), np.uint8)
    ids[2:6, 4:12] = 5
    semantic = generate(client, model="semantic", label_map=png64(Image.fromarray(ids, "L")), steps=2)
    assert pixels(semantic[0]).shape == (8, 24, 3)  # the label map sets the size
    assert generate(client, model="text", steps=2, height=8, width=24)[0]["parameters"]["width"] == 24


def test_native_class_images_are_the_clis(client, tiny_models, tmp_path):
    served = generate(client, model="class", **{"class": "banana"}, n=2, seed=5, steps=3, sampler="euler_a",
                      guidance=2.0)
    assert main(["sample", tiny_models["class"], "--class", "banana", "--n", "2", "--seed", "5", "--steps", "3",
                 "--sampler", "euler_a", "--guidance", "2", "--device", "cpu", "--out", str(tmp_path)]) == 0
    for i, item in enumerate(served):
        assert np.array_equal(pixels(item), np.asarray(Image.open(tmp_path / f"{5 + i:06d}.png")))


def test_the_guidance_and_cache_intervals_are_the_clis_and_regenerate_from_the_png(client, tiny_models, tmp_path):
    served = generate(client, model="class", **{"class": "banana"}, n=2, seed=2, steps=4, guidance=3.0,
                      guidance_interval=[0.2, 0.8], cache_interval=2)
    assert main(["sample", tiny_models["class"], "--class", "banana", "--n", "2", "--seed", "2", "--steps", "4",
                 "--guidance", "3", "--guidance-interval", "0.2", "0.8", "--cache-interval", "2", "--device", "cpu",
                 "--out", str(tmp_path / "cli")]) == 0
    for i, item in enumerate(served):
        cli = Image.open(tmp_path / "cli" / f"{2 + i:06d}.png")
        assert np.array_equal(pixels(item), np.asarray(cli))
        recorded = json.loads(cli.text["ldmkit"])
        for key in ("guidance_interval", "cache_interval"):  # recorded as the CLI records them
            assert item["parameters"][key] == recorded[key]
    assert served[0]["parameters"]["guidance_interval"] == [0.2, 0.8]
    (tmp_path / "served.png").write_bytes(base64.b64decode(served[1]["png"]))
    assert main(["sample", "--from-png", str(tmp_path / "served.png"), "--out", str(tmp_path / "again")]) == 0
    assert np.array_equal(pixels(served[1]), np.asarray(Image.open(tmp_path / "again" / "000003.png")))


def test_upscale_and_inpaint_are_the_clis(client, tiny_models, tmp_path):
    small = Image.fromarray(np.random.default_rng(0).integers(0, 255, (6, 10, 3), dtype=np.uint8))
    small.save(tmp_path / "small.png")
    res = client.post("/ldmkit/v1/upscale", json={"image": png64(small), "steps": 2, "seed": 3, "tile": 8})
    assert res.status_code == 200, res.text
    item = res.json()["images"][0]
    assert pixels(item).shape == (24, 40, 3) and item["parameters"]["task"] == "upscale"
    assert item["parameters"]["inputs"]["image_sha256"]
    assert main(["upscale", str(tmp_path / "small.png"), "--model", tiny_models["low_res"], "--steps", "2", "--seed",
                 "3", "--tile", "8", "--device", "cpu", "--out", str(tmp_path / "big.png")]) == 0
    assert np.array_equal(pixels(item), np.asarray(Image.open(tmp_path / "big.png")))

    image, mask = Image.new("RGB", (16, 16), (30, 60, 90)), Image.new("L", (16, 16), 0)
    mask.paste(255, (0, 8, 16, 16))
    image.save(tmp_path / "image.png")
    mask.save(tmp_path / "mask.png")
    res = client.post("/ldmkit/v1/inpaint", json={"image": png64(image), "mask": png64(mask), "steps": 2, "seed": 1})
    assert res.status_code == 200, res.text
    filled = pixels(res.json()["images"][0])
    assert (filled[:8] == (30, 60, 90)).all()  # kept exactly
    assert main(["inpaint", str(tmp_path / "image.png"), str(tmp_path / "mask.png"), "--model", tiny_models["inpaint"],
                 "--steps", "2", "--seed", "1", "--device", "cpu", "--out", str(tmp_path / "filled.png")]) == 0
    assert np.array_equal(filled, np.asarray(Image.open(tmp_path / "filled.png")))


def events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_a_stream_reports_queue_progress_previews_and_the_images(client):
    res = client.post("/ldmkit/v1/generate", params={"stream": "true"},
                      json={"model": "text", "prompt": "x", "n": 3, "batch_size": 2, "steps": 3})
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/event-stream")
    stream = events(res.text)
    names = [name for name, _ in stream]
    assert names[0] == "queued" and names[-1] == "done" and set(names[1:-1]) == {"progress"}
    progress = [data["progress"] for name, data in stream if name == "progress"]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any("preview" in data for name, data in stream if name == "progress")  # --preview-every 1
    preview, _ = decoded(next(data["preview"] for name, data in stream if "preview" in data))
    assert preview.size == (16, 16)
    done = stream[-1][1]
    assert done["id"] == stream[0][1]["id"] and len(done["images"]) == 3
    assert res.headers["x-job-id"] == done["id"]


def test_upscaling_reports_progress_over_all_its_tiles(client):
    small = png64(Image.new("RGB", (12, 4), (80, 80, 80)))
    res = client.post("/ldmkit/v1/upscale", params={"stream": "true"},
                      json={"image": small, "steps": 2, "tile": 4, "overlap": 0})
    progress = [data["progress"] for name, data in events(res.text) if name == "progress" and data["step"]]
    grid = np.array([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])  # 3 tiles x 2 steps (sampled: some may be unseen)
    assert progress == sorted(progress) and np.isclose(progress[-1], 1.0, atol=1e-4)
    assert all(np.isclose(grid, p, atol=1e-4).any() for p in progress) and len(progress) >= 2
    assert events(res.text)[-1][0] == "done"


def test_jobs_are_listed_and_can_be_looked_up(client):
    res = client.post("/ldmkit/v1/generate", json={"model": "none", "steps": 1})
    job_id = res.json()["id"]
    assert any(job["id"] == job_id for job in client.get("/ldmkit/v1/jobs").json())
    status = client.get(f"/ldmkit/v1/jobs/{job_id}").json()
    assert status["status"] == "done" and status["progress"] == 1.0 and status["model"] == "none"
    assert client.post(f"/ldmkit/v1/jobs/{job_id}/cancel").json()["status"] == "done"  # too late: nothing happens

"""`ldmkit sample --layout boxes.json` and `--label-map map.png` (tiny untrained models: the plumbing)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ldmkit.cli import main
from ldmkit.pipeline import read_params
from ldmkit.pipeline.metadata import from_json

from .conftest import write_model_file


def model_file(tmp_path, conditioning: dict, **unet) -> str:
    return write_model_file(tmp_path / "model.safetensors", conditioning, **unet)


def coco_json(path, boxes_per_image):
    images = [{"id": i, "file_name": f"{i}.png", "width": 40, "height": 20} for i in range(len(boxes_per_image))]
    annotations = [{"image_id": i, "bbox": bbox, "category_id": cat}
                   for i, boxes in enumerate(boxes_per_image) for bbox, cat in boxes]
    categories = [{"id": c + 1, "name": f"class {c}"} for c in range(10)]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(path)


def test_layout_json_conditions_the_samples(tmp_path):
    ckpt = model_file(tmp_path, {"kind": "layout", "layout": {"embed_dim": 32, "max_boxes": 4, "layers": 1}},
                      in_channels=3, use_spatial_transformer=True, context_dim=32)
    layouts = coco_json(tmp_path / "boxes.json", [[([0, 0, 20, 10], 4)], [([10, 5, 30, 15], 9), ([0, 0, 4, 4], 1)]])
    out = tmp_path / "out"
    assert main(["sample", ckpt, "--layout", layouts, "--n", "3", "--steps", "2", "--seed", "0", "--out", str(out),
                 "--device", "cpu"]) == 0
    params = [read_params(out / f"{i:06d}.png") for i in range(3)]
    assert params[0]["condition"] == {"boxes": [[0.0, 0.0, 0.5, 0.5]], "labels": [3]}  # category id 4 -> class 3
    assert params[1]["condition"]["labels"] == [8, 0] and params[2]["condition"] == params[0]["condition"]
    again = tmp_path / "again"  # a layout is plain JSON, so the PNG regenerates its image
    assert main(["sample", "--from-png", str(out / "000001.png"), "--out", str(again)]) == 0
    assert np.array_equal(np.asarray(Image.open(out / "000001.png")), np.asarray(Image.open(again / "000001.png")))


def test_label_map_png_sets_the_size_and_conditions_the_samples(tmp_path):
    ckpt = model_file(tmp_path, {"kind": "semantic", "semantic": {"factor": 1}}, in_channels=3 + 11)
    ids = np.zeros((24, 40), np.uint8)
    ids[4:20, 8:24] = 5
    Image.fromarray(ids, "L").save(tmp_path / "map.png")
    out = tmp_path / "out"
    assert main(["sample", ckpt, "--label-map", str(tmp_path / "map.png"), "--n", "2", "--steps", "2",
                 "--out", str(out), "--device", "cpu"]) == 0
    image = Image.open(out / "000000.png")
    assert image.size == (40, 24)  # the map's size, not the training size (16 px)
    params = read_params(out / "000000.png")
    assert torch.equal(from_json(params["condition"]), torch.from_numpy(ids.astype(np.int64)))  # the map itself
    again = tmp_path / "again"  # so a semantic sample regenerates from its own PNG
    assert main(["sample", "--from-png", str(out / "000001.png"), "--out", str(again)]) == 0
    assert np.array_equal(np.asarray(Image.open(out / "000001.png")), np.asarray(Image.open(again / "000001.png")))
    ids[:] = 0
    Image.fromarray(ids, "L").save(tmp_path / "blank.png")
    assert main(["sample", ckpt, "--label-map", str(tmp_path / "blank.png"), "--n", "1", "--steps", "2",
                 "--out", str(tmp_path / "blank"), "--device", "cpu"]) == 0
    assert not np.array_equal(np.asarray(image), np.asarray(Image.open(tmp_path / "blank" / "000000.png")))
    assert main(["sample", ckpt, "--label-map", str(tmp_path / "map.png"), "--layout", "x.json",
                 "--out", str(out)]) == 2


@pytest.mark.parametrize("bad", [{"images": []}, {"images": [{"id": 1}], "annotations": [], "categories": []}])
def test_malformed_layout_files_are_reported(tmp_path, bad, capsys):
    ckpt = model_file(tmp_path, {"kind": "layout", "layout": {"embed_dim": 32, "max_boxes": 4, "layers": 1}},
                      in_channels=3, use_spatial_transformer=True, context_dim=32)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert main(["sample", ckpt, "--layout", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err

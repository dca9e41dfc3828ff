import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from ldmkit.data import DataConfig, build_dataset
from ldmkit.data.boxes import PAD_LABEL, crop_boxes, keep_largest
from ldmkit.data.coco import CocoDataset, read_coco, read_layouts
from ldmkit.data.transforms import draw_flip, sample_generator
from ldmkit.errors import DataError

# image file -> (width, height, [(bbox [x, y, w, h], category_id), ...])
IMAGES = {
    "wide.png": (80, 40, [([30, 10, 20, 12], 90), ([0, 4, 8, 8], 3), ([50, 20, 30, 20], 7)]),
    "tall.png": (36, 60, [([6, 30, 12, 18], 7)]),
}


@pytest.fixture
def coco(tmp_path):
    images, annotations = [], []
    for i, (name, (w, h, boxes)) in enumerate(IMAGES.items()):
        canvas = np.full((h, w, 3), 255, np.uint8)
        for bbox, _ in boxes[:1]:  # the first box of each image is drawn red
            x, y, bw, bh = bbox
            canvas[y:y + bh, x:x + bw] = (255, 0, 0)
        Image.fromarray(canvas).save(tmp_path / name)
        images.append({"id": 10 + i, "file_name": name, "width": w, "height": h})
        annotations += [{"image_id": 10 + i, "bbox": b, "category_id": c, "iscrowd": 0} for b, c in boxes]
    annotations.append({"image_id": 10, "bbox": [0, 0, 80, 40], "category_id": 3, "iscrowd": 1})
    categories = [{"id": 90, "name": "toothbrush"}, {"id": 3, "name": "car"}, {"id": 7, "name": "train"}]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return tmp_path, path


def red_extent(image: torch.Tensor) -> torch.Tensor:
    """Pixel extent (x0, y0, x1, y1) of the clearly red pixels of a (3, H, W) image."""
    red = (image[0] > 0.5) & (image[1] < -0.2)
    ys, xs = torch.nonzero(red, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()


def test_categories_are_ranked_by_id_and_crowds_left_out(coco):
    _, path = coco
    images, boxes, names = read_coco(path)
    assert names == ["car", "train", "toothbrush"]  # ids 3, 7, 90
    assert [c for _, c in boxes[10]] == [2, 0, 1] and len(boxes[10]) == 3  # no crowd region


def test_center_crop_rescales_clips_and_drops_boxes(coco):
    root, path = coco
    sample = CocoDataset(root, path, 20, split="all", max_boxes=4)[0]
    # wide.png 80x40 -> 40x20, crop x 10..30: box (30,10,50,22) -> (15,5,25,11) -> (5,5,15,11)
    # the car at x 0..8 -> 0..4 lies left of the crop (dropped); the train is clipped at the right edge
    torch.testing.assert_close(sample["boxes"][0], torch.tensor([5, 5, 15, 11]) / 20)
    torch.testing.assert_close(sample["boxes"][1], torch.tensor([15, 10, 20, 20]) / 20)  # (25,10,40,20) - 10
    assert sample["box_labels"].tolist() == [2, 1, PAD_LABEL, PAD_LABEL]
    assert sample["caption"] == "toothbrush, train" and sample["label"] == 2  # the larger visible box


@pytest.mark.parametrize("seed", range(6))
def test_boxes_follow_the_image_through_random_crops_and_flips(coco, seed):
    root, path = coco
    ds = CocoDataset(root, path, 24, split="all", crop="random", flip=True)
    for index in range(2):
        sample = ds[(index, seed)]
        drawn = red_extent(sample["image"])  # the red rectangle is the first box
        assert sample["boxes"][0].mul(24).sub(drawn).abs().max() <= 1.0  # within a resampled pixel
    assert any(draw_flip(sample_generator(s)) for s in range(6))  # flips are exercised


def test_crop_boxes_and_keep_largest():
    boxes, kept = crop_boxes(torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]), 2.0, 1.0, 5, 0, 20)
    assert kept.tolist() == [0] and torch.allclose(boxes, torch.tensor([[0, 0, 15, 10]]) / 20)
    b = torch.tensor([[0, 0, 0.1, 0.1], [0, 0, 0.5, 0.5], [0, 0, 0.3, 0.3]])
    big, labels = keep_largest(b, torch.tensor([0, 1, 2]), 2)
    assert labels.tolist() == [1, 2]  # the two largest, in their original order


def test_read_layouts_normalises_by_image_size(coco):
    _, path = coco
    layouts = read_layouts(path)
    assert layouts[1]["labels"] == [1]
    torch.testing.assert_close(torch.tensor(layouts[1]["boxes"]), torch.tensor([[6 / 36, 0.5, 0.5, 0.8]]))
    assert len(layouts[0]["boxes"]) == 3 and layouts[0]["labels"] == [2, 0, 1]


def test_errors_name_the_problem(coco, tmp_path, caplog):
    root, path = coco
    bad = json.loads(path.read_text())
    bad["annotations"][0]["category_id"] = 5
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match="category_id 5, which 'categories' does not list"):
        read_coco(tmp_path / "bad.json")
    with pytest.raises(DataError, match="does not exist"):
        read_coco(tmp_path / "missing.json")
    (root / "tall.png").unlink()
    with caplog.at_level(logging.WARNING):
        assert CocoDataset(root, path, 16, split="all")[1] is None  # skipped, counted by the loader
    with pytest.raises(Exception, match="data.annotations must name"):
        DataConfig(dataset="coco", path=str(root))
    ds = build_dataset(DataConfig(dataset="coco", path=str(root), annotations=str(path), resolution=16,
                                  val_fraction=0.0, max_boxes=2), "train")
    assert ds[0]["boxes"].shape == (2, 4)

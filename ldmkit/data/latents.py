"""Reading a latent cache: a dataset encoded once by a frozen first stage, in safetensors shards.

    CACHE/index.json          what is in the cache (written last: its presence means complete)
    CACHE/shard-00000.safetensors
        "mean", "logvar"      KL first stage: the posterior moments (N V, C, h, w); z = mean + std * eps
        "latent"              VQ (pre-quantisation) or identity first stage (N V, C, h, w)
        "*_flip"              the same for the mirrored images, when the cache was built with flips
        "image"               optional (N V, 3, H, W) uint8 images, for conditions computed from them
        "label"               (N V,) int64; captions in the shard metadata ("captions", a JSON list)

Each of the N images of a shard has V = index["views"] consecutive rows: its centre crop (V = 1),
or V fixed random crops for `data.crop: random` (data/views.py; labels and captions per view,
as box-derived ones follow the crop). A sample key (index, seed) from `EpochSampler` draws the
view, then the flip, then the posterior noise, so a cached run is reproducible and resumable
exactly, like one that encodes every step.
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path

import torch
from safetensors import safe_open
from torch.utils.data import Dataset

from ldmkit.data.transforms import sample_generator
from ldmkit.errors import DataError

INDEX_FILE = "index.json"
CACHE_VERSION = 2  # 2: index["views"], V rows per image


def sample_latent(moments: dict[str, torch.Tensor], generator: torch.Generator | None) -> torch.Tensor:
    """z from a cached entry: KL posterior sample (mode without a generator), else the stored latent."""
    if "latent" in moments:
        return moments["latent"]
    mean, logvar = moments["mean"], moments["logvar"]
    if generator is None:
        return mean
    return mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator, dtype=mean.dtype)


class LatentCacheDataset(Dataset):
    """{"latent": (C, h, w) unscaled, "label": int, "caption": str, "index": int} from a latent cache."""

    def __init__(self, cache: str | Path):
        self.root = Path(cache)
        index_file = self.root / INDEX_FILE
        if not index_file.is_file():
            raise DataError(f"{self.root} is not a complete latent cache (no {INDEX_FILE}); rebuild it with "
                            "`ldmkit cache-latents CONFIG`")
        self.index = json.loads(index_file.read_text())
        if self.index.get("version") != CACHE_VERSION:
            raise DataError(f"latent cache {self.root} has version {self.index.get('version')}, expected "
                            f"{CACHE_VERSION}; delete it and run `ldmkit cache-latents` again")
        self.flip, self.views = self.index["flip"], self.index["views"]
        self.class_names = list(self.index.get("class_names", []))
        self.starts = []  # the first image of each shard
        total = 0
        for shard in self.index["shards"]:
            self.starts.append(total)
            total += shard["count"]
        self.count = total  # images (each with `views` rows)
        self._tensors: dict[int, dict[str, torch.Tensor]] = {}
        self._captions: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return self.count

    def __str__(self) -> str:
        return f"latent cache {self.root} ({self.count} images)"

    def labels(self) -> torch.Tensor:
        """(n,) every image's class label, as cached."""
        return torch.cat([self._shard(k)[0]["label"][::self.views] for k in range(len(self.starts))]).long()

    def _shard(self, k: int) -> tuple[dict[str, torch.Tensor], list[str]]:
        if k not in self._tensors:
            with safe_open(str(self.root / self.index["shards"][k]["file"]), framework="pt") as f:
                self._tensors[k] = {name: f.get_tensor(name) for name in f.keys()}
                self._captions[k] = json.loads((f.metadata() or {}).get("captions", "[]"))
        return self._tensors[k], self._captions[k]

    def __getitem__(self, key: int | tuple[int, int | None]) -> dict:
        index, seed = key if isinstance(key, tuple) else (key, None)
        k = bisect.bisect_right(self.starts, index) - 1
        tensors, captions = self._shard(k)
        generator = sample_generator(seed)
        view = 0
        if self.views > 1 and generator is not None:
            view = int(torch.randint(self.views, (), generator=generator))
        row = (index - self.starts[k]) * self.views + view
        flipped = self.flip and generator is not None and float(torch.rand((), generator=generator)) < 0.5
        suffix = "_flip" if flipped else ""
        names = ("latent",) if "latent" in tensors else ("mean", "logvar")
        moments = {name: tensors[name + suffix][row] for name in names}
        sample = {"latent": sample_latent(moments, generator), "label": int(tensors["label"][row]),
                  "caption": captions[row] if captions else "", "index": index}
        if "image" in tensors:  # stored for conditions computed from the image (SR, inpainting)
            sample["image"] = tensors["image" + suffix][row].float().div(127.5).sub(1.0)
        return sample

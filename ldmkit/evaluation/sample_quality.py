"""Sample-quality metrics of generated images against a reference set: FD/FID, KID, IS, precision, recall.

`evaluate_samples(images_or_features, ref, features="effnet")` is the Python entry point; the
`ldmkit eval` command generates the samples and calls the same `sample_metrics`. Every metric is
reported under its feature network's label ("FID" only for the Inception network, "FD-EffNet"
for EfficientNet-Lite0; see `feature_networks.py`), with "_std" entries for KID and IS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ldmkit.data.images import to_tensor
from ldmkit.errors import ConfigError, ShapeError
from ldmkit.evaluation.feature_networks import FeatureNetwork, build_feature_network
from ldmkit.evaluation.frechet import frechet_distance, gaussian_moments
from ldmkit.evaluation.inception_score import SPLITS, inception_score
from ldmkit.evaluation.kid import SUBSET_SIZE, SUBSETS, kernel_distance
from ldmkit.evaluation.precision_recall import NEIGHBOURS, precision_recall
from ldmkit.evaluation.reference import MAX_STORED_FEATURES, ReferenceStats, reference_statistics


@dataclass
class SampleFeatures:
    """Features (N, D) and class logits (N, K) of generated images in one network's space."""

    features: torch.Tensor
    logits: torch.Tensor | None
    network: str  # FeatureNetwork.key

    def __len__(self) -> int:
        return self.features.shape[0]


@torch.no_grad()
def image_features(images: torch.Tensor | Sequence[Image.Image], network: FeatureNetwork, batch_size: int = 50,
                   device: torch.device | str = "cpu") -> SampleFeatures:
    """Features of (N, 3, H, W) images in [-1, 1] or of PIL images, `batch_size` at a time."""
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
        part = images[start:start + batch_size]
        if not isinstance(part, torch.Tensor):
            part = torch.stack([to_tensor(im) for im in part])  # (B, 3, H, W)
        f, lg = network(part.to(device))
        feats.append(f.cpu())
        logits.append(lg.cpu())
    if not feats:
        raise ShapeError("no images to evaluate")
    return SampleFeatures(torch.cat(feats), torch.cat(logits), network.key)


def sample_metrics(samples: SampleFeatures, ref: ReferenceStats, network: FeatureNetwork,
                   kid_subsets: int = SUBSETS, kid_subset_size: int = SUBSET_SIZE, k: int = NEIGHBOURS,
                   seed: int = 0, device: torch.device | str = "cpu") -> dict:
    """Every metric the features allow, as a flat JSON-ready dict; "notes" says what was left out and why.

    Precision/recall's distance matrices are computed on `device` (a GPU makes 10k x 50k fast).
    """
    if samples.network != network.key:
        raise ConfigError(f"the sample features come from {samples.network}, not {network.key}")
    labels, notes = network.labels, []
    out: dict = {"features": network.name, "feature_network": network.description, "samples": len(samples),
                 "reference_images": ref.n}
    mu, sigma = gaussian_moments(samples.features)
    out[labels["fd"]] = frechet_distance(mu, sigma, ref.mu, ref.sigma)
    if ref.features is None:
        notes.append("KID and precision/recall need reference features; this statistics file has only mu/sigma")
    else:
        real = torch.from_numpy(ref.features)
        out["reference_features"] = real.shape[0]
        generator = torch.Generator().manual_seed(seed)
        out[labels["kid"]], out[labels["kid"] + "_std"] = kernel_distance(
            samples.features, real, kid_subsets, kid_subset_size, generator)
        if min(len(samples), real.shape[0]) < kid_subset_size:
            notes.append(f"KID subsets of {min(len(samples), real.shape[0])} samples (fewer than {kid_subset_size})")
        if min(len(samples), real.shape[0]) > k:
            out[labels["precision"]], out[labels["recall"]] = precision_recall(real.to(device), samples.features, k)
        else:
            notes.append(f"precision/recall need more than k={k} samples per set")
    if samples.logits is not None and len(samples) >= SPLITS:
        out[labels["is"]], out[labels["is"] + "_std"] = inception_score(samples.logits)
    else:
        notes.append(f"IS needs class logits of at least {SPLITS} samples")
    if ref.n > MAX_STORED_FEATURES:
        notes.append(f"KID and precision/recall use a fixed subset of {MAX_STORED_FEATURES} reference images")
    if notes:
        out["notes"] = notes
    return out


def evaluate_samples(images_or_features: torch.Tensor | Sequence[Image.Image] | SampleFeatures,
                     ref: ReferenceStats | str | Path | torch.Tensor, features: str | FeatureNetwork = "effnet",
                     inception_weights: str | Path | None = None, resolution: int | None = None,
                     split: str = "train", ref_n: int | None = None,
                     batch_size: int = 50, device: torch.device | str = "cpu", kid_subsets: int = SUBSETS,
                     kid_subset_size: int = SUBSET_SIZE, seed: int = 0) -> dict:
    """Sample-quality metrics of generated images against a reference.

    images_or_features: (N, 3, H, W) tensor in [-1, 1], PIL images, or `SampleFeatures`.
    ref: `ReferenceStats`; a .npz of statistics; "openmoji" or an image folder (read at `resolution`,
        default the samples' size; `split`; `ref_n` images; statistics cached); or (M, 3, H, W) real images.
    features: "effnet" (offline default: FD-EffNet, KID-EffNet, ...) or "inception" (FID, KID, IS, ...;
        needs the weight file, see `ldmkit.evaluation.inception`), or a built `FeatureNetwork`.
    """
    network = features if isinstance(features, FeatureNetwork) else build_feature_network(features, inception_weights)
    network = network.to(device)
    if isinstance(images_or_features, SampleFeatures):
        samples = images_or_features
    else:
        samples = image_features(images_or_features, network, batch_size, device)
    if isinstance(ref, torch.Tensor):
        real = image_features(ref, network, batch_size, device).features
        ref = ReferenceStats(*gaussian_moments(real), real.numpy(), real.shape[0], {"network": network.key})
    elif not isinstance(ref, ReferenceStats):
        if resolution is None and not isinstance(images_or_features, SampleFeatures):
            first = images_or_features[0]
            resolution = first.shape[-1] if isinstance(first, torch.Tensor) else first.size[0]
        ref = reference_statistics(ref, network, resolution, split, ref_n, batch_size, device)
    else:
        ref.check_network(network, "given")
    return sample_metrics(samples, ref, network, kid_subsets, kid_subset_size, seed=seed, device=device)


def markdown_table(result: dict) -> str:
    """The metrics of `sample_metrics` as a two-column Markdown table (means with their std)."""
    rows = ["| metric | value |", "| --- | --- |"]
    for key, value in result.items():
        if key.endswith("_std") or key == "notes":
            continue
        std = result.get(key + "_std")
        if isinstance(value, float):
            text = f"{value:.4g}" if std is None else f"{value:.4g} ± {std:.2g}"
        else:
            text = str(value)
        rows.append(f"| {key} | {text} |")
    for note in result.get("notes", []):
        rows.append(f"| note | {note} |")
    return "\n".join(rows) + "\n"


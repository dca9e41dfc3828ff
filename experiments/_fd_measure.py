"""What experiments/paper_claims.py measures: sample quality with throughput, reconstruction quality, costs.

Sample quality is FD-EffNet and KID-EffNet (ldmkit.evaluation: ImageNet EfficientNet-Lite0 features,
not the FID Inception network) of n samples (sample i from seed i, so every model, checkpoint and
setting starts from the same noises) against the cached statistics of the 64 px OpenMoji training
split. Throughput counts the sampler and the decoder (images/s of `pipe.decode(pipe.latents(...))`),
not the feature network.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from _runs import batches  # experiments/_runs.py

from ldmkit.autoencoder.checkpoint import load_autoencoder
from ldmkit.data.openmoji import OpenMojiDataset
from ldmkit.evaluation import ReferenceStats, SampleFeatures, build_feature_network, image_features, sample_metrics
from ldmkit.evaluation.autoencoder import reconstruct
from ldmkit.evaluation.feature_networks import FeatureNetwork
from ldmkit.evaluation.image_metrics import psnr, ssim
from ldmkit.evaluation.reference import reference_statistics
from ldmkit.features.perceptual import PerceptualConfig, build_perceptual
from ldmkit.pipeline.generate import Pipeline

# EffNet inputs are 224 px: on CPU small batches are faster (as in experiments/faithfulness.py)
FEATURE_BATCH = 8


@dataclass
class Judge:
    """The feature network and the reference statistics samples are compared with."""

    network: FeatureNetwork
    ref: ReferenceStats
    device: torch.device

    @classmethod
    def of_split(cls, split: str, device: torch.device, resolution: int = 64) -> Judge:
        network = build_feature_network("effnet").to(device)
        return cls(network, reference_statistics("openmoji", network, resolution, split, batch_size=FEATURE_BATCH,
                                                 device=device), device)

    def features(self, images: torch.Tensor) -> SampleFeatures:
        return image_features(images, self.network, FEATURE_BATCH, self.device)

    def scores(self, features: SampleFeatures) -> dict:
        """FD, KID (mean and std over subsets), precision and recall of features against the reference."""
        metrics, labels = sample_metrics(features, self.ref, self.network, device=self.device), self.network.labels
        return {"fd": metrics[labels["fd"]], "kid": metrics[labels["kid"]], "kid_std": metrics[labels["kid"] + "_std"],
                "precision": metrics.get(labels["precision"]), "recall": metrics.get(labels["recall"]),
                "reference_images": self.ref.n}


def join(parts: list[SampleFeatures]) -> SampleFeatures:
    return SampleFeatures(torch.cat([p.features for p in parts]), torch.cat([p.logits for p in parts]),
                          parts[0].network)


@torch.no_grad()
def measure(pipe: Pipeline, judge: Judge, n: int, steps: int, sampler: str = "ddim", guidance: float = 1.0,
            batch: int = 25, conditions=None, keep: int = 0) -> tuple[dict, torch.Tensor]:
    """Scores and throughput of samples 0..n-1, and the first `keep` of them (keep, 3, H, W) in [-1, 1]."""
    seconds, parts, kept = 0.0, [], []
    for s in batches(n, batch):
        seeds = list(range(s.start, s.stop))
        raw = None if conditions is None else conditions(seeds)
        start = time.perf_counter()
        images = pipe.decode(pipe.latents(seeds, raw, steps, sampler, guidance))  # (b, 3, H, W)
        seconds += time.perf_counter() - start
        parts.append(judge.features(images))
        kept.append(images[:max(0, keep - sum(len(k) for k in kept))].cpu())
    result = {"samples": n, "steps": steps, "sampler": sampler, "guidance": guidance, "batch": batch,
              **judge.scores(join(parts)), "sampling_seconds": round(seconds, 2), "images_per_second": n / seconds}
    return result, torch.cat(kept)


@torch.no_grad()
def reconstruction_quality(spec: str, judge: Judge, batch: int = 32) -> tuple[dict, torch.Tensor]:
    """PSNR, SSIM, perceptual distance and rFD/rKID (reconstructions against the originals) of a first
    stage on every validation image, and a grid tensor of 8 originals over their reconstructions."""
    dataset = OpenMojiDataset(64, "val")
    x = torch.stack([dataset[i]["image"] for i in range(len(dataset))])  # (N, 3, 64, 64)
    model = load_autoencoder(spec).to(judge.device).eval()
    rec = torch.cat([reconstruct(model, x[s].to(judge.device)).cpu() for s in batches(len(x), batch)])
    perceptual = build_perceptual(PerceptualConfig()).to(judge.device)
    distance = torch.cat([perceptual(x[s].to(judge.device), rec[s].to(judge.device)).float().cpu()
                          for s in batches(len(x), batch)])
    scores = judge.scores(judge.features(rec))
    result = {"images": len(x), "psnr": float(psnr(x, rec).mean()), "ssim": float(ssim(x, rec).mean()),
              "perceptual": float(distance.mean()), "rfd": scores["fd"], "rkid": scores["kid"],
              "rkid_std": scores["kid_std"], "latent_shape": list(model.latent(x[:1].to(judge.device)).shape[1:]),
              "parameters": sum(p.numel() for p in model.parameters())}
    return result, torch.cat([x[:8], rec[:8]])


@dataclass
class Cost:
    """Seconds per sampler step of a batch, per decoded batch and per featurised image, measured once."""

    step: float
    decode: float
    feature: float
    batch: int

    def seconds(self, n: int, steps: int, evaluations_per_step: float = 1.0) -> float:
        calls = math.ceil(n / self.batch)
        return calls * (steps * self.step * evaluations_per_step + self.decode) + n * self.feature


@torch.no_grad()
def measure_cost(pipe: Pipeline, features, batch: int, condition=None, guidance: float = 1.0, steps: int = 4) -> Cost:
    """Time one batch: `steps` DDIM steps (after a 1-step warm-up), its decoding, and `features` (images ->
    features) of some of its images."""
    seeds = list(range(batch))
    pipe.latents(seeds, condition, 1, "ddim", guidance)  # warm-up: first-call allocations
    start = time.perf_counter()
    z = pipe.latents(seeds, condition, steps, "ddim", guidance)
    mid = time.perf_counter()
    images = pipe.decode(z)
    end = time.perf_counter()
    features(images[:FEATURE_BATCH])
    feature = (time.perf_counter() - end) / min(FEATURE_BATCH, batch)
    return Cost((mid - start) / steps, end - mid, feature, batch)

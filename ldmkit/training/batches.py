"""What the diffusion trainer consumes: scaled latents, raw conditions and per-sample generators.

Latents come from the latent cache (encoded once) or from the frozen first stage every step;
each sample's seed (from `EpochSampler`) decides its flip and posterior sample, and a derived
seed its diffusion t and noise. Pixel-space models (identity first stage) read images directly.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import Dataset

from ldmkit.data import build_dataset, train_loader
from ldmkit.data.latents import LatentCacheDataset, sample_latent
from ldmkit.data.transforms import derive_seed
from ldmkit.training.latent_cache import build_latent_cache, cache_folder, latent_std

NOISE_STREAM = 1  # derive_seed stream of the diffusion t and noise (stream 0 is augmentation)


class WithSeed(Dataset):
    """Adds each sample's seed to the sample dict, so the trainer can draw per-sample noise."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        sample = self.dataset[key]
        if sample is not None:
            sample["seed"] = key[1]
        return sample


class LatentBatches:
    def __init__(self, cfg, first_stage: nn.Module, ctx, per_rank: int):
        self.cfg, self.ctx, self.per_rank = cfg, ctx, per_rank
        self.first_stage = first_stage.to(ctx.device).eval()
        self.cached = cfg.latent_cache and first_stage.config.kind != "identity"
        if self.cached:
            folder = cache_folder(first_stage, cfg.data)
            if ctx.is_main:
                build_latent_cache(first_stage, cfg.data, ctx.device, folder=folder)
            ctx.barrier()
            dataset = LatentCacheDataset(folder)
        else:
            dataset = build_dataset(cfg.data, "train")
        self.dataset = dataset
        self._skipped = 0

    def measured_scale(self) -> float:
        """1 / std of the training latents (1 for pixel space, whose images are already unit-scaled)."""
        if self.first_stage.config.kind == "identity":
            return 1.0
        if self.cached:
            return 1.0 / latent_std(self.dataset)
        images = torch.stack([self.dataset[i]["image"] for i in range(min(len(self.dataset), 512))])
        with torch.no_grad():
            z = torch.cat([self.first_stage.latent(x.to(self.ctx.device), torch.Generator().manual_seed(0))
                           for x in images.split(64)])
        return 1.0 / float(z.float().std())

    def take_skipped(self) -> int:
        skipped, self._skipped = self._skipped, 0
        return skipped

    def stream(self, start_step: int, scale: float, condition_key: str | None = None
               ) -> Iterator[tuple[torch.Tensor, object, list[torch.Generator]]]:
        """Endless (z0 (b, C, h, w) scaled, raw condition, generators) micro-batches of this rank."""
        tc, ctx = self.cfg.train, self.ctx
        consumed = start_step * self.per_rank * tc.grad_accum
        loader = train_loader(WithSeed(self.dataset), self.per_rank, tc.seed, start=consumed, rank=ctx.rank,
                              world_size=ctx.world_size, num_workers=self.cfg.data.num_workers)
        for batch in loader:
            self._skipped += int(batch["skipped"])
            if "seed" not in batch:
                continue
            seeds = [int(s) for s in batch["seed"]]
            noise = [torch.Generator().manual_seed(derive_seed(s, NOISE_STREAM)) for s in seeds]
            if self.cached:
                z = batch["latent"]
            else:
                z = self._encode(batch["image"].to(ctx.device), seeds)
            raw = batch.get(condition_key) if condition_key else None
            yield z.to(ctx.device) * scale, raw, noise

    @torch.no_grad()
    def _encode(self, images: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        stage = self.first_stage
        if stage.config.kind != "kl":
            return stage.latent(images)
        posterior = stage.encode(images)
        moments = [{"mean": posterior.mean[i].cpu(), "logvar": posterior.logvar[i].cpu()} for i in range(len(seeds))]
        gens = [torch.Generator().manual_seed(derive_seed(s, 2)) for s in seeds]
        return torch.stack([sample_latent(m, g) for m, g in zip(moments, gens)])

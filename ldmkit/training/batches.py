"""What the diffusion trainer consumes: scaled latents, raw conditions and per-sample generators.

Latents come from the latent cache (encoded once; with `data.crop: random`, `latent_cache_views`
crops per image) or from the frozen first stage every step, as one line at start-up says; each
sample's seed (from `EpochSampler`) decides its crop (view), flip and posterior sample, and a
derived seed its diffusion t and noise. Pixel-space models (identity first stage) read images
directly.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ldmkit.data import build_dataset, train_loader
from ldmkit.data.latents import LatentCacheDataset, sample_latent
from ldmkit.data.loader import balance_note, check_readable, fixed_images
from ldmkit.data.transforms import stream_generators
from ldmkit.data.views import crops_at_random
from ldmkit.training.latent_cache import build_latent_cache, cache_folder, cached_views, latent_samples

# random streams of a sample (derive_seed): 0 augmentation, then these
NOISE_STREAM, POSTERIOR_STREAM, CONDITION_STREAM = 1, 2, 3


class LatentBatches:
    def __init__(self, cfg, first_stage: nn.Module, ctx, per_rank: int, store_images: bool = False):
        self.cfg, self.ctx, self.per_rank = cfg, ctx, per_rank
        self.first_stage = first_stage.to(ctx.device).eval()
        views = cached_views(cfg.data, cfg.latent_cache_views)
        self.cached = cfg.latent_cache and first_stage.config.kind != "identity" and views > 0
        if self.cached:
            folder = cache_folder(first_stage, cfg.data, store_images, views)
            ctx.on_main(lambda: build_latent_cache(first_stage, cfg.data, ctx.device, folder=folder,
                                                   store_images=store_images, views=views))
            dataset = LatentCacheDataset(folder)
        else:
            dataset = build_dataset(cfg.data, "train")
            check_readable(dataset)  # now, rather than a stall mid-run
        self.dataset = dataset
        self._skipped = 0
        if ctx.is_main and first_stage.config.kind != "identity":
            print(self._what_is_encoded(views), flush=True)
        if ctx.is_main and cfg.data.balance == "classes":
            print(balance_note(dataset, getattr(dataset, "class_names", ())), flush=True)

    def _what_is_encoded(self, views: int) -> str:
        flips = " (+ flips)" if self.cfg.data.flip else ""
        if not self.cached:
            why = "latent_cache: false" if not self.cfg.latent_cache else "latent_cache_views: 0"
            crop = "data.crop: random with " if crops_at_random(self.cfg.data) else ""
            return f"{crop}{why}: encoding every batch on the fly"
        crops = f"{views} random-crop view{'s' if views > 1 else ''}" if crops_at_random(self.cfg.data) else "one view"
        return f"latent cache: {crops} per image{flips} of {len(self.dataset)} images ({self.dataset.root})"

    def measured_normalisation(self, center: bool) -> tuple[torch.Tensor | None, float]:
        """(the training latents' mean per channel (C,) if `center`, else None; 1 / std of the latents less it),
        from one sample of them (1 for pixel space, whose images are already unit-scaled)."""
        if self.first_stage.config.kind == "identity":
            return None, 1.0
        z = self._sample_latents()
        shift = z.mean((0, 2, 3)) if center else None
        return shift, 1.0 / float((z if shift is None else z - shift.view(1, -1, 1, 1)).std())

    def _sample_latents(self) -> torch.Tensor:
        """Latents (n, C, h, w) of up to 10000 training images (cached) or 512 (encoded here), float32 on CPU."""
        if self.cached:
            return latent_samples(self.dataset)
        images = fixed_images(self.dataset, 512)
        with torch.no_grad():
            z = torch.cat([self.first_stage.latent(x.to(self.ctx.device), torch.Generator().manual_seed(0))
                           for x in images.split(64)])
        return z.float().cpu()

    def take_skipped(self) -> int:
        skipped, self._skipped = self._skipped, 0
        return skipped

    def stream(self, start_step: int, scale: float, shift: torch.Tensor | None = None
               ) -> Iterator[tuple[torch.Tensor, dict]]:
        """Endless (z0 (b, C, h, w) shifted and scaled, batch) micro-batches of this rank; batch["seed"] per
        sample. `shift` (C,): subtracted per channel first (center_latents)."""
        offset = None if shift is None else shift.view(1, -1, 1, 1).to(self.ctx.device)
        tc, ctx = self.cfg.train, self.ctx
        loader = train_loader(self.dataset, self.per_rank, tc.seed, start_batches=start_step * tc.grad_accum,
                              rank=ctx.rank, world_size=ctx.world_size, num_workers=self.cfg.data.num_workers,
                              balance=self.cfg.data.balance)
        for batch in loader:
            self._skipped += int(batch["skipped"])
            seeds = [int(s) for s in batch["seed"]]
            z = batch["latent"] if self.cached else self._encode(batch["image"].to(ctx.device), seeds)
            z = z.to(ctx.device)
            yield (z if offset is None else z - offset) * scale, batch

    @torch.no_grad()
    def _encode(self, images: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        stage = self.first_stage
        if stage.config.kind != "kl":
            return stage.latent(images)
        posterior = stage.encode(images)
        moments = [{"mean": posterior.mean[i].cpu(), "logvar": posterior.logvar[i].cpu()} for i in range(len(seeds))]
        generators = stream_generators(seeds, POSTERIOR_STREAM)
        return torch.stack([sample_latent(m, g) for m, g in zip(moments, generators)])

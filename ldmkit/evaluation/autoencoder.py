"""How well a first stage reconstructs: PSNR, SSIM, perceptual distance, VQ codebook usage."""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from ldmkit.data.images import make_grid
from ldmkit.data.loader import eval_loader
from ldmkit.errors import DataError
from ldmkit.evaluation.image_metrics import psnr, ssim
from ldmkit.progress import progress


@torch.no_grad()
def reconstruct(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x -> D(E(x)) as used downstream: the KL posterior mode, the VQ codes."""
    return model.decode(model.latent(x)).clamp(-1, 1)


@torch.no_grad()
def evaluate_autoencoder(model: nn.Module, dataset: Dataset, perceptual: nn.Module | None, batch_size: int = 32,
                         device: torch.device | str = "cpu", max_batches: int | None = None) -> dict[str, float]:
    """Mean PSNR (dB), SSIM and perceptual distance over (a prefix of) `dataset`, plus VQ code usage."""
    model.eval()
    totals = {"psnr": 0.0, "ssim": 0.0, "perceptual": 0.0}
    n = 0
    codes = None
    loader = eval_loader(dataset, batch_size)
    total = len(loader) if max_batches is None else min(max_batches, len(loader))
    for i, batch in enumerate(progress(loader, desc="evaluating autoencoder", total=total)):
        if max_batches is not None and i >= max_batches:
            break
        if "image" not in batch:
            continue  # every file of the batch was unreadable (skipped and counted by the loader)
        x = batch["image"].to(device)
        x_rec = reconstruct(model, x)
        totals["psnr"] += psnr(x, x_rec).sum().item()
        totals["ssim"] += ssim(x, x_rec).sum().item()
        if perceptual is not None:
            totals["perceptual"] += perceptual(x, x_rec).float().sum().item()
        if hasattr(model, "quantize"):
            used = model.quantize.nearest(model.latent(x)).flatten().bincount(minlength=model.config.n_embed) > 0
            codes = used if codes is None else codes | used
        n += x.shape[0]
    if n == 0:
        raise DataError(f"no image of {dataset} could be read, so there is nothing to evaluate; check the images "
                        "(the warnings above name the unreadable ones)")
    metrics = {key: value / max(n, 1) for key, value in totals.items()}
    if perceptual is None:
        del metrics["perceptual"]
    if codes is not None:
        metrics["codebook_usage"] = codes.float().mean().item()
    metrics["images"] = n
    return metrics


def reconstruction_grid(model: nn.Module, x: torch.Tensor, per_row: int = 8) -> Image.Image:
    """Rows of originals, each followed by a row of their reconstructions."""
    x_rec = reconstruct(model, x)
    rows = []
    for start in range(0, x.shape[0], per_row):
        rows += [x[start:start + per_row].cpu(), x_rec[start:start + per_row].cpu()]
    return make_grid(torch.cat(rows), nrow=per_row)

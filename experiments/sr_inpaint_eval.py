"""Faithfulness of the conditional tasks: super-resolution vs bicubic, inpainting vs simple fills.

Trains (or loads) the LDMs of configs/ldm/sr-emoji64.yaml and configs/ldm/inpaint-emoji64.yaml on
top of a given first stage, then evaluates them on evenly spread OpenMoji validation images (64 px):

- super-resolution (x4, 16 -> 64 px, bicubic LR as in training): PSNR, SSIM and perceptual distance
  (EfficientNet-Lite0, ldmkit.features.perceptual) to the HR image, for the model (its raw output,
  and with the per-channel mean colour fix `ldmkit upscale` applies) and for bicubic upsampling;
- inpainting (one LaMa-style large mask per image, fixed seeds): the largest change of an unmasked
  8-bit pixel (must be 0), PSNR inside the holes and perceptual distance of the filled image to the
  original (the kept pixels are identical, so only the hole differs), for the model, a mean-colour
  fill and a harmonic (diffusion) fill.

Runs live in RUNS/sr-emoji64 and RUNS/inpaint-emoji64: a run with a checkpoint is loaded, one
without is trained first (with --set overrides applied to both configs). The UNet's channels (and
the SR conditioner's rescaling) are fitted to the first stage, so `--first-stage identity` works
too (pixel space, much slower). Results: a JSON file and example grids next to it.

The full run (after `ldmkit train-autoencoder configs/autoencoder/kl-f4c4-emoji64.yaml`):
    python experiments/sr_inpaint_eval.py --first-stage runs/kl-f4c4-emoji64
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _runs import (  # experiments/_runs.py
    add_run_arguments,
    batches,
    command_line,
    spread,
    trained,
)

from ldmkit.data.degradations import bicubic_downsample
from ldmkit.data.images import make_grid, to_uint8
from ldmkit.data.masks import large_mask
from ldmkit.data.openmoji import OpenMojiDataset
from ldmkit.evaluation.image_metrics import psnr, ssim
from ldmkit.evaluation.restoration_baselines import (
    bicubic_upscale,
    harmonic_fill,
    mean_fill,
)
from ldmkit.features.perceptual import PerceptualConfig, build_perceptual
from ldmkit.pipeline.inpaint import inpaint_tensor

CONFIGS = {"sr": "configs/ldm/sr-emoji64.yaml", "inpaint": "configs/ldm/inpaint-emoji64.yaml"}
MASK_SEED = 1_000_000  # mask i of the evaluation is drawn from seed MASK_SEED + i


def validation_images(n: int) -> torch.Tensor:
    dataset = OpenMojiDataset(64, "val")
    return torch.stack([dataset[i]["image"] for i in spread(n, len(dataset))])  # (n, 3, 64, 64), all groups


@torch.no_grad()
def perceptual_of(metric, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.cat([metric(x[s], y[s]) for s in batches(x.shape[0], 64)])


def summary(metric, outputs: dict[str, torch.Tensor], reference: torch.Tensor) -> dict:
    return {name: {"psnr": float(psnr(x, reference).mean()), "ssim": float(ssim(x, reference).mean()),
                   "perceptual": float(perceptual_of(metric, x, reference).mean())} for name, x in outputs.items()}


@torch.no_grad()
def evaluate_sr(pipe, hr: torch.Tensor, metric, args) -> tuple[dict, torch.Tensor]:
    lr = bicubic_downsample(hr, 4)  # (n, 3, 16, 16), as in training
    sr = torch.cat([pipe.decode(pipe.latents(list(range(s.start, s.stop)), lr[s], args.steps, args.sampler)).cpu()
                    for s in batches(hr.shape[0], args.batch)]).float().clamp(-1, 1)
    shift = lr.mean(dim=(2, 3), keepdim=True) - sr.mean(dim=(2, 3), keepdim=True)
    outputs = {"ldm": sr, "ldm + colour fix": (sr + shift).clamp(-1, 1), "bicubic": bicubic_upscale(lr, 4)}
    grid = torch.stack([torch.nn.functional.interpolate(lr, scale_factor=4, mode="nearest"), outputs["bicubic"],
                        sr, hr], dim=1)[:8].flatten(0, 1)
    return summary(metric, outputs, hr), grid


def hole_psnr(x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B,) PSNR over the hole pixels only, on the [0, 1] scale."""
    err = ((x - y) / 2).pow(2) * masks
    return 10 * torch.log10(1 / (err.sum(dim=(1, 2, 3)) / (3 * masks.sum(dim=(1, 2, 3)))).clamp_min(1e-12))


@torch.no_grad()
def evaluate_inpaint(pipe, images: torch.Tensor, metric, args) -> tuple[dict, torch.Tensor]:
    n = images.shape[0]
    masks = torch.stack([large_mask(64, 64, torch.Generator().manual_seed(MASK_SEED + i)) for i in range(n)])
    filled = torch.cat([inpaint_tensor(pipe, images[s], masks[s], args.steps, args.sampler, seed=s.start,
                                       guidance=args.guidance).cpu() for s in batches(n, args.batch)])
    keep = (masks == 0).expand_as(images).movedim(1, -1).numpy()  # (n, H, W, 3)
    changed = abs(to_uint8(filled).astype(int) - to_uint8(images).astype(int))[keep]
    outputs = {"ldm": filled, "mean fill": mean_fill(images, masks), "harmonic fill": harmonic_fill(images, masks)}
    results = {name: {"hole_psnr": float(hole_psnr(x, images, masks).mean()),
                      "perceptual": float(perceptual_of(metric, x, images).mean())} for name, x in outputs.items()}
    results["ldm"]["max_abs_change_outside_mask_uint8"] = int(changed.max())
    results["mask_coverage_mean"] = float(masks.mean())
    grid = torch.stack([images * (1 - masks), outputs["mean fill"], outputs["harmonic fill"], filled, images],
                       dim=1)[:8].flatten(0, 1)
    return results, grid


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(p)
    p.add_argument("--tasks", nargs="+", default=["sr", "inpaint"], choices=["sr", "inpaint"])
    p.add_argument("--guidance", type=float, default=1.0, help="inpainting: classifier-free guidance on the masked "
                                                              "image (its config trains the null condition)")
    p.add_argument("--n", type=int, default=256, help="validation images")
    p.add_argument("--out", default="experiments/results/sr_inpaint_eval.json")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    images = validation_images(args.n)
    metric = build_perceptual(PerceptualConfig()).eval()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"command": command_line(argv),
              "first_stage": args.first_stage, "n_images": images.shape[0],
              "sampler": args.sampler, "steps": args.steps, "guidance": args.guidance}
    for task in args.tasks:
        pipe = trained(CONFIGS[task], args)
        start = time.perf_counter()
        evaluate = evaluate_sr if task == "sr" else evaluate_inpaint
        report[task], grid = evaluate(pipe, images, metric, args)
        report[task]["eval_seconds"] = round(time.perf_counter() - start, 1)
        make_grid(grid, nrow=4 if task == "sr" else 5).save(out.with_name(f"{out.stem}_{task}.png"))
        print(json.dumps({task: report[task]}, indent=1), flush=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

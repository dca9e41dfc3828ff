"""The main job's LDM training step under config overrides: how many steps each variant fits in one budget.

    python benchmarks/train_step.py          # the shipped UNet against the [1, 2, 4] one it replaced
    python benchmarks/train_step.py --variant "" --variant "unet.channel_mult=[1,1,2]" \
        --variant "unet.channel_mult=[1,2,2];unet.num_res_blocks=2"

Each variant is configs/ldm/emoji64-kl-f4.yaml with its `--set`s (';'-separated; "" is the config as
shipped), random weights and random latents of the shipped first stage's shape. A step is the trainer's
(training/ldm.py): the min-SNR loss under bfloat16 autocast, backward, fused AdamW and the EMA update.
Rounds of --block steps are interleaved, so a drift of the host's speed hits every variant alike.
Columns: UNet parameters, ms per step (min and median of the rounds), the time relative to the first
variant, and the steps that fit in the time of --steps steps of the first variant.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._common import CLOCKS, describe, measure, set_threads  # noqa: E402
from ldmkit.autoencoder.model import build_autoencoder  # noqa: E402
from ldmkit.config import load_config  # noqa: E402
from ldmkit.device import autocast  # noqa: E402
from ldmkit.fast import for_training  # noqa: E402
from ldmkit.pipeline.model import LatentDiffusion, LDMConfig  # noqa: E402
from ldmkit.training.autoencoder import AutoencoderRunConfig  # noqa: E402
from ldmkit.training.config import adamw  # noqa: E402
from ldmkit.training.ema import EMA  # noqa: E402
from ldmkit.training.ldm import LDMRunConfig  # noqa: E402
from ldmkit.training.trained import TrainedParts  # noqa: E402

CPU = torch.device("cpu")
LDM_CONFIG = ROOT / "configs/ldm/emoji64-kl-f4.yaml"
AE_CONFIG = ROOT / "configs/autoencoder/kl-f4-emoji64.yaml"


def training_step(overrides: list[str], block: int):
    """(parameters, a function running `block` training steps) of the main job's LDM with `overrides`."""
    cfg = load_config(LDMRunConfig, LDM_CONFIG, overrides)
    first_stage = build_autoencoder(load_config(AutoencoderRunConfig, AE_CONFIG).model)
    torch.manual_seed(0)
    model = LatentDiffusion(LDMConfig(first_stage.config, cfg.unet, cfg.diffusion, cfg.conditioning, 1.0,
                                      cfg.data.resolution))
    for_training(model)
    trained = TrainedParts(model).train()
    ema, opt = EMA(trained, cfg.ema_decay), adamw(trained.parameters(), cfg.train)
    batch = {"seed": list(range(cfg.train.batch_size))}
    z0 = torch.randn(cfg.train.batch_size, *model.latent_shape(cfg.data.resolution, cfg.data.resolution))

    def steps() -> None:
        for _ in range(block):
            opt.zero_grad(set_to_none=True)
            with autocast(CPU, cfg.train.precision):
                loss = trained(z0, batch, cfg.conditioning.drop_prob)
            loss.backward()
            opt.step()
            ema.update(trained)

    return sum(p.numel() for p in model.unet.parameters()), steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", help="';'-separated --set overrides; repeat for each variant")
    p.add_argument("--steps", type=int, default=1400, help="the first variant's step count to convert")
    p.add_argument("--block", type=int, default=10, help="steps per timed round")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    args = p.parse_args()
    set_threads(args.threads)
    variants = args.variant or ["unet.channel_mult=[1,2,4]", ""]
    built = {v: training_step([s for s in v.split(";") if s], args.block) for v in variants}
    runs = {v: steps for v, (_, steps) in built.items()}
    times, _ = measure(runs, args.repeats, CPU, CLOCKS["wall"], context=torch.enable_grad)
    print(describe(CPU, CLOCKS["wall"]) + f"; rounds of {args.block} steps\n")
    print(f"| variant | UNet parameters | ms/step (min) | ms/step (median) | time | steps in {args.steps}'s time |")
    print("|---|---|---|---|---|---|")
    first = statistics.median(times[variants[0]])
    for v in variants:
        median = statistics.median(times[v])
        print(f"| {v or '(as shipped)'} | {built[v][0] / 1e6:.1f} M | {1e3 * min(times[v]) / args.block:.1f} | "
              f"{1e3 * median / args.block:.1f} | {median / first:.2f}x | {round(args.steps * first / median)} |")


if __name__ == "__main__":
    main()

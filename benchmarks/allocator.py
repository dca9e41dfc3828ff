"""glibc malloc's defaults against keep_freed_memory() (ldmkit/fast/allocator.py), on the main job's two steps.

    python benchmarks/allocator.py                 # 3 rounds of both jobs, each way (about 3 min on 2 cores)
    python benchmarks/allocator.py --jobs ldm --rounds 5

Each measurement runs in a fresh process (the malloc settings are process-wide), interleaved round by
round so that a drift of the host's speed hits both ways alike. The steps are the main job's, with random
weights and inputs: the LDM's (configs/ldm/emoji64-kl-f4.yaml: batch 32 of 4x16x16 latents, min-SNR loss,
bfloat16 autocast, fused AdamW) and the autoencoder's (configs/autoencoder/kl-f4-emoji64.yaml: batch 8 of
64 px images, L1 + perceptual + KL, the PatchGAN's two passes). Columns: s/step (median of the rounds),
the process's peak RSS and its minor page faults (the kernel mapping fresh zeroed pages).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._common import set_threads  # noqa: E402
from ldmkit.config import load_config  # noqa: E402
from ldmkit.device import autocast  # noqa: E402
from ldmkit.fast import for_frozen_features, keep_freed_memory, use_fast_attention  # noqa: E402
from ldmkit.training.config import adamw  # noqa: E402

CPU = torch.device("cpu")


def ldm_step(steps: int) -> float:
    from ldmkit.autoencoder.model import build_autoencoder
    from ldmkit.pipeline.model import LatentDiffusion, LDMConfig
    from ldmkit.training.autoencoder import AutoencoderRunConfig
    from ldmkit.training.ldm import LDMRunConfig
    from ldmkit.training.trained import TrainedParts

    cfg = load_config(LDMRunConfig, ROOT / "configs/ldm/emoji64-kl-f4.yaml")
    ae = load_config(AutoencoderRunConfig, ROOT / "configs/autoencoder/kl-f4-emoji64.yaml")
    first_stage = build_autoencoder(ae.model)
    model = LatentDiffusion(LDMConfig(first_stage.config, cfg.unet, cfg.diffusion, cfg.conditioning, 1.0,
                                      cfg.data.resolution))
    use_fast_attention(model)  # what for_training does, less its keep_freed_memory()
    trained = TrainedParts(model).train()
    opt = adamw(trained.parameters(), cfg.train)
    batch = {"seed": list(range(cfg.train.batch_size))}
    z0 = torch.randn(cfg.train.batch_size, *model.latent_shape(cfg.data.resolution, cfg.data.resolution))

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(CPU, cfg.train.precision):
            loss = trained(z0, batch, 0.0)
        loss.backward()
        opt.step()

    return timed(step, steps)


def autoencoder_step(steps: int) -> float:
    from ldmkit.autoencoder.loss import AutoencoderLoss
    from ldmkit.autoencoder.model import build_autoencoder
    from ldmkit.features.perceptual import build_perceptual
    from ldmkit.training.autoencoder import AutoencoderRunConfig

    cfg = load_config(AutoencoderRunConfig, ROOT / "configs/autoencoder/kl-f4-emoji64.yaml")
    model = build_autoencoder(cfg.model).train()
    perceptual = build_perceptual(cfg.perceptual)
    for_frozen_features(perceptual.backbone)  # as train_autoencoder does
    loss_fn = AutoencoderLoss(cfg.loss, perceptual, cfg.model.kind).train()
    opt, opt_d = adamw(model.parameters(), cfg.train), adamw(loss_fn.discriminator.parameters(), cfg.train)
    x = torch.rand(cfg.train.batch_size, 3, cfg.data.resolution, cfg.data.resolution) * 2 - 1
    noise, step_index = torch.Generator().manual_seed(0), cfg.loss.disc_start  # the discriminator on

    def step():
        with autocast(CPU, cfg.train.precision):
            out = model(x, generator=noise)
            loss, _ = loss_fn.generator_loss(x, out, step_index, model.last_layer())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with autocast(CPU, cfg.train.precision):
            d_loss, _ = loss_fn.discriminator_loss(x, out.reconstruction, step_index)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

    return timed(step, steps)


def timed(step, steps: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


JOBS = {"ldm": (ldm_step, 40), "autoencoder": (autoencoder_step, 30)}


def child(job: str, keep: bool) -> None:
    set_threads(None)
    if keep:
        keep_freed_memory()
    fn, steps = JOBS[job]
    seconds = fn(steps)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"s_per_step": seconds, "peak_rss_gib": usage.ru_maxrss / 2**20, "minor_faults": usage.ru_minflt}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", default="ldm,autoencoder", help="comma-separated: ldm, autoencoder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("JOB", "KEEP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1] == "1")
    jobs = [job.strip() for job in args.jobs.split(",")]
    unknown = sorted(set(jobs) - set(JOBS))
    if unknown:
        parser.error(f"unknown job(s) {', '.join(unknown)}; choose from {', '.join(JOBS)}")
    results: dict[tuple[str, bool], list[dict]] = {}
    for _ in range(args.rounds):
        for job in jobs:
            for keep in (False, True):
                done = subprocess.run([sys.executable, __file__, "--child", job, str(int(keep))], capture_output=True,
                                      text=True, check=True)
                results.setdefault((job, keep), []).append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds (median s/step; "
          "min-max)")
    print(f"{'job':12s} {'malloc':22s} {'s/step':>8s} {'min-max':>15s} {'peak RSS GiB':>13s} {'minor faults':>13s}")
    for (job, keep), rows in results.items():
        times = [row["s_per_step"] for row in rows]
        print(f"{job:12s} {'keep_freed_memory()' if keep else 'glibc defaults':22s} {statistics.median(times):8.4f} "
              f"{min(times):7.4f}-{max(times):.4f} {max(row['peak_rss_gib'] for row in rows):13.2f} "
              f"{int(statistics.median(row['minor_faults'] for row in rows)):13d}")


if __name__ == "__main__":
    main()

"""Distil a tiny decoder (TAESD-style, ldmkit/autoencoder/tiny.py) from an LDM's first stage, to measure
what decoding with one costs in FD on ldmkit's own models (`--tiny-decoder`, docs/benchmarks.md).

The training pairs are the model's diffusion-space latents of the 64 px OpenMoji training images (and
their mirror images), z = E(x) * scale_factor, and the first stage's own decoding of them, D(z): the
tiny decoder learns to render what the first stage renders, from the latents the UNet samples. Loss:
L1 + 0.25 x the perceptual distance, as the first stage's own training. Writes an ldmkit tiny-decoder
file that records the scale factor (`ldmkit sample MODEL --tiny-decoder FILE`).

    python experiments/tiny_decoder.py runs/emoji/ldm --out runs/emoji/tiny-decoder.safetensors
    ldmkit eval runs/emoji/ldm --tiny-decoder runs/emoji/tiny-decoder.safetensors ...
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from _runs import batches  # experiments/_runs.py

import ldmkit
from ldmkit.autoencoder.tiny import TinyDecoder, TinyDecoderConfig
from ldmkit.data.openmoji import OpenMojiDataset
from ldmkit.device import autocast
from ldmkit.features.perceptual import PerceptualConfig, build_perceptual
from ldmkit.interop.tiny_decoder import save_tiny_decoder
from ldmkit.progress import progress


@torch.no_grad()
def pairs(pipe, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(diffusion-space latents, the first stage's decodings) of images and their mirror images."""
    images = torch.cat([images, images.flip(-1)])
    z = torch.cat([pipe.encode(images[s]) for s in batches(len(images), 64)])
    return z, torch.cat([pipe.decode(z[s]) for s in batches(len(z), 64)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="the LDM whose first stage to distil (run, checkpoint or model file)")
    p.add_argument("--out", required=True, help="the tiny-decoder file to write (.safetensors)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--channels", type=int, default=64)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    pipe = ldmkit.load(args.model, device="cpu")
    dataset = OpenMojiDataset(pipe.config.image_size, "train")
    started = time.perf_counter()
    z, target = pairs(pipe, torch.stack([dataset[i]["image"] for i in range(len(dataset))]))
    print(f"{len(z)} pairs encoded and decoded in {time.perf_counter() - started:.0f} s", flush=True)
    levels = int(math.log2(pipe.model.factor)) + 1
    blocks = (3,) * (levels - 1) + (1,)  # TAESD's (3, 3, 3, 1) for f = 8
    decoder = TinyDecoder(TinyDecoderConfig(z.shape[1], args.channels, blocks, pipe.config.scale_factor)).train()
    perceptual = build_perceptual(PerceptualConfig(network="efficientnet_lite0"))
    opt = torch.optim.AdamW(decoder.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    order = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    bar = progress(range(args.steps), desc="tiny decoder")
    for step in bar:
        pick = torch.randint(len(z), (args.batch_size,), generator=order)
        with autocast(torch.device("cpu"), "bf16"):
            out = decoder(z[pick])
            l1 = (out.float() - target[pick]).abs().mean()
            loss = l1 + 0.25 * perceptual(out.float(), target[pick]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(l1=f"{l1.item():.4f}", loss=f"{loss.item():.4f}")
    bar.close()
    save_tiny_decoder(decoder.eval(), args.out)
    print(f"trained {args.steps} steps in {time.perf_counter() - started:.0f} s "
          f"({sum(p.numel() for p in decoder.parameters()) / 1e6:.2f} M parameters): {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

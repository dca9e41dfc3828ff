"""Post-hoc weight averaging of an LDM run's checkpoints: a model file whose sampling weights are the mean
of several checkpoints' raw (trained) or EMA weights.

The EMA that ldmkit samples with follows the paper's warm-up, decay_n = min(decay, (1 + n) / (10 + n)),
so after 1400 updates it averages over roughly the last 150 steps. This asks whether another average
would sample better, without training again: the raw weights of the last checkpoint alone, or the
uniform mean of several (a box filter over the end of the run, in the spirit of EDM2's post-hoc EMA).

    python experiments/average_checkpoints.py runs/ag/ldm --steps 1000 1100 1200 1300 1400 --weights raw \
        --out runs/ema/rawmean1000
    python experiments/sampling_study.py runs/ema/rawmean1000 --settings euler_a:30 \
        --guide runs/ag/ldm/checkpoints/step-00000200 --guidance 2 --out runs/ema/rawmean1000.json

The output folder holds a model.safetensors that every ldmkit command loads like the run's own (the last
step's file, with its `ema.` tensors replaced).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ldmkit.checkpoint import load_model_file, save_model_file

PREFIX = {"raw": "unet.", "ema": "ema.unet."}


def average(run: Path, steps: list[int], weights: str) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(tensors, config, metadata) of the last step's file, `ema.unet.*` the mean of the chosen weights."""
    files = [run / "checkpoints" / f"step-{step:08d}" / "model.safetensors" for step in steps]
    tensors, config, metadata = load_model_file(files[-1])
    total: dict[str, torch.Tensor] = {}
    for file in files:
        chosen, _, _ = load_model_file(file)
        for name, value in chosen.items():
            if name.startswith(PREFIX[weights]):
                key = "ema.unet." + name[len(PREFIX[weights]):]
                total[key] = total.get(key, 0) + value.double()
    missing = sorted(k for k in tensors if k.startswith("ema.unet.") and k not in total)
    if missing:
        raise SystemExit(f"the checkpoints have no {weights} weights for {missing[:3]}")
    tensors.update({k: (v / len(files)).to(tensors[k].dtype) for k, v in total.items()})
    return tensors, config, metadata


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path, help="an LDM run folder (its checkpoints/step-* are read)")
    p.add_argument("--steps", type=int, nargs="+", required=True, help="checkpoint steps to average")
    p.add_argument("--weights", choices=sorted(PREFIX), default="raw", help="raw (trained) or EMA weights")
    p.add_argument("--out", type=Path, required=True, help="folder for the averaged model.safetensors")
    args = p.parse_args(argv)
    tensors, config, metadata = average(args.run, sorted(args.steps), args.weights)
    args.out.mkdir(parents=True, exist_ok=True)
    save_model_file(args.out / "model.safetensors", tensors, metadata["ldmkit.kind"], config,
                    extra={k: v for k, v in metadata.items() if k not in ("ldmkit.kind", "ldmkit.config")})
    print(f"wrote {args.out / 'model.safetensors'}: {args.weights} weights of steps {sorted(args.steps)} averaged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

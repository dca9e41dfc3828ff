"""Peak memory of the whole CLI path at Stable Diffusion size: `ldmkit sample MODEL_FILE` loads the model
file and draws one guided 512 px image.

    python benchmarks/sd_load.py                      # float32 and bfloat16 files, each dtype (about 5 min)
    python benchmarks/sd_load.py --rows bf16-file-bf16

benchmarks/sd_cpu.py builds its models in the dtype they run in, so its peak RSS is the sampling's
alone. Here the model comes from a file, as users run it: the random-weight SD-size model of
sd_cpu.py (sd-v1 UNet, SD's KL-f8 VAE, a 12-layer 768-wide text transformer) is saved once as an
ldmkit model file, in float32 and in bfloat16 (runs/benchmarks/sd-file-*), and each row runs
`ldmkit sample FILE --prompt ... --guidance 7.5 --sampler dpmpp_2m --karras --steps 2 --dtype D` in a
fresh process under /usr/bin/time: its peak resident memory (file pages it maps included) and wall
time (load, warm-up-free 2 steps, decode).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.sd_cpu import PROMPT, SD, build, config  # noqa: E402
from ldmkit.checkpoint import save_model_file  # noqa: E402
from ldmkit.pipeline.checkpoint import KIND, ldm_config_dict, ldm_tensors  # noqa: E402

ROOT = Path("runs/benchmarks")
ROWS = {"fp32-file-fp32": ("float32", "float32"), "fp32-file-bf16": ("float32", "bfloat16"),
        "bf16-file-bf16": ("bfloat16", "bfloat16")}  # name: (dtype of the file's weights, --dtype)


def model_file(dtype: str) -> Path:
    """The SD-size model file with weights in `dtype`, written once."""
    path = ROOT / f"sd-file-{dtype}" / "model.safetensors"
    if not path.is_file():
        model = build(config(SD), getattr(torch, dtype))
        tensors = {k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v
                   for k, v in ldm_tensors(model).items()}
        save_model_file(path, tensors, KIND, ldm_config_dict(model))
    return path


def run(name: str) -> dict:
    weights, dtype = ROWS[name]
    path = model_file(weights)
    command = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "ldmkit", "sample", str(path), "--prompt", PROMPT,
               "--guidance", "7.5", "--sampler", "dpmpp_2m", "--karras", "--steps", "2", "--n", "1", "--dtype", dtype,
               "--out", str(ROOT / "sd-load-out")]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{name} failed: {done.stderr.strip().splitlines()[-2:]}")
    peak = int(done.stderr.strip().splitlines()[-1])  # KiB
    return {"row": name, "file_gib": round(path.stat().st_size / 2**30, 2), "peak_rss_gib": round(peak / 2**20, 2),
            "seconds": round(seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    args = p.parse_args()
    unknown = [name for name in args.rows.split(",") if name not in ROWS]
    if unknown:
        p.error(f"unknown rows {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    rows = [run(name) for name in args.rows.split(",")]
    print("| row | file | peak RSS | wall s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['row']} | {r['file_gib']} GiB | {r['peak_rss_gib']} GiB | {r['seconds']} |")
    (ROOT / "sd_load.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

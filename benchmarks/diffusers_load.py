"""Peak memory of loading a Stable-Diffusion-size diffusers pipeline folder (`load_diffusers_folder`).

    python benchmarks/diffusers_load.py --folder /tmp/sd-diffusers                  # UNet in bfloat16, then float32
    python benchmarks/diffusers_load.py --folder /tmp/sd-diffusers --checkout /tmp/old --dtypes float32

The folder is written once (about 4.3 GB; delete it when done): random weights at Stable Diffusion v1's
sizes in StableDiffusionPipeline's layout, float32 as SD's own files hold them: the sd-v1 UNet (860 M
parameters), SD's KL-f8 VAE and a CLIP ViT-L/14-size text encoder (12 layers of width 768, 49408 tokens;
its tokenizer has the 256 byte tokens and no merges). Each load runs in a fresh process:
`load_diffusers_folder(folder, unet_dtype=D)`, then its peak resident memory (ru_maxrss, the file pages it
maps included) and wall time. `--checkout DIR` loads with the ldmkit package in DIR instead (e.g. the last
commit: `mkdir /tmp/old && git archive HEAD ldmkit | tar -x -C /tmp/old`), to compare before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.sd_cpu import SD, SD_DIFFUSION  # noqa: E402
from ldmkit.conditioning import ConditioningConfig  # noqa: E402
from ldmkit.conditioning.sections import TextConfig  # noqa: E402
from ldmkit.pipeline import LatentDiffusion, LDMConfig  # noqa: E402
from ldmkit.unet import UNET_PRESETS  # noqa: E402

LOAD = """
import resource, sys, time, torch
import ldmkit
from ldmkit.interop.diffusers_folders import load_diffusers_folder
start = time.perf_counter()
load_diffusers_folder(sys.argv[1], unet_dtype=getattr(torch, sys.argv[2]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - start, ldmkit.__file__)
"""


def clip_folder(out: Path) -> Path:
    """A CLIP ViT-L/14-size text model config and a byte-level tokenizer (no merges), no weights."""
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(ord("!"), ord("!") + 256)]  # any 256 single characters will do here
    vocab = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    (out / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (out / "merges.txt").write_text("#version: 0.2\n")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}))
    transformers.CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                num_attention_heads=12, max_position_embeddings=77, bos_token_id=len(vocab) - 2,
                                eos_token_id=len(vocab) - 1).save_pretrained(str(out))
    return out


def write_folder(folder: Path) -> None:
    """The SD-size pipeline folder, random weights (float32)."""
    from ldmkit.interop.diffusers_folders import save_diffusers_folder

    with tempfile.TemporaryDirectory() as tmp:
        clip = clip_folder(Path(tmp) / "clip")
        text = TextConfig(encoder="clip", embed_dim=768, max_tokens=77, weights_path=str(clip), vocab_path=str(clip))
        cfg = LDMConfig(SD["ae"], UNET_PRESETS[SD["unet"]], SD_DIFFUSION,
                        ConditioningConfig(kind="text", drop_prob=0.0, trainable=False, text=text),
                        scale_factor=0.18215, image_size=SD["side"])
        torch.manual_seed(0)
        save_diffusers_folder(LatentDiffusion(cfg), folder)


def load(folder: Path, dtype: str, checkout: Path | None) -> dict:
    """One load in a fresh process, run in `checkout` (its ldmkit first on the path) or in this one."""
    root = (checkout or Path(__file__).resolve().parents[1]).resolve()
    done = subprocess.run([sys.executable, "-c", LOAD, str(folder.resolve()), dtype], capture_output=True, text=True,
                          cwd=root, env=dict(os.environ, PYTHONPATH=str(root)))
    if done.returncode:
        raise SystemExit(f"loading with the UNet in {dtype} failed: {done.stderr.strip().splitlines()[-3:]}")
    peak_kib, seconds, module = done.stdout.split()
    if not Path(module).is_relative_to(root):
        raise SystemExit(f"the load ran {module}, not the ldmkit in {root}")
    return {"unet_dtype": dtype, "peak_rss_gib": round(int(peak_kib) / 2**20, 2), "seconds": round(float(seconds), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", type=Path, required=True, help="the pipeline folder; written when it does not exist")
    p.add_argument("--dtypes", default="bfloat16,float32", help="comma-separated UNet dtypes, one load each")
    p.add_argument("--checkout", type=Path, help="a folder holding the ldmkit package to load with")
    args = p.parse_args()
    if not (args.folder / "model_index.json").is_file():
        write_folder(args.folder)
    size = sum(f.stat().st_size for f in args.folder.rglob("*") if f.is_file())
    rows = [load(args.folder, dtype, args.checkout) for dtype in args.dtypes.split(",")]
    print(f"folder {size / 2**30:.2f} GiB; ldmkit from {args.checkout or 'this checkout'}")
    print("| UNet dtype | peak RSS | wall s |\n|---|---|---|")
    for r in rows:
        print(f"| {r['unet_dtype']} | {r['peak_rss_gib']} GiB | {r['seconds']} |")


if __name__ == "__main__":
    main()

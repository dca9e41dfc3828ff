"""Peak memory of loading a Stable-Diffusion-size model: a diffusers pipeline folder, or a CompVis checkpoint
(a `.safetensors` file + its YAML, as A1111 users hold SD v1.5), through `load_foreign` as `ldmkit.load` does.

    python benchmarks/load_memory.py --folder /tmp/sd-diffusers                     # UNet in bfloat16, then float32
    python benchmarks/load_memory.py --folder /tmp/sd-diffusers --checkout /tmp/old --dtypes float32
    python benchmarks/load_memory.py --format compvis --folder /tmp/sd-compvis      # v1-5-pruned-emaonly-like

The folder is written once (about 4.3 GB; delete it when done): random weights at Stable Diffusion v1's
sizes, float32 as SD's own files hold them: the sd-v1 UNet (860 M parameters), SD's KL-f8 VAE and a CLIP
ViT-L/14-size text encoder (12 layers of width 768, 49408 tokens; its tokenizer has the 256 byte tokens
and no merges). `--format diffusers`: StableDiffusionPipeline's layout. `--format compvis`: `model.safetensors`
as v1-5-pruned-emaonly.safetensors holds it (model.diffusion_model.*, first_stage_model.*,
cond_stage_model.* and the schedule buffers, no model_ema.*: the EMA weights are the model's), SD's
`v1-inference.yaml` and `clip/`, the CLIP config and tokenizer that `--text-encoder` names. Each load runs in
a fresh process: `load_foreign(path, unet_dtype=D)`, then its peak resident memory (ru_maxrss, the file
pages it maps included), wall time and the dtype the UNet came out in. A child's ru_maxrss starts at its
parent's peak, so the folder is written in a process of its own and this one stays small. `--checkout DIR`
loads with the ldmkit package in DIR instead (e.g. the last commit: `mkdir /tmp/old && git archive HEAD
ldmkit | tar -x -C /tmp/old`), to compare before and after.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.sd_cpu import SD, SD_DIFFUSION  # noqa: E402
from ldmkit.conditioning import ConditioningConfig, build_conditioner  # noqa: E402
from ldmkit.conditioning.sections import TextConfig  # noqa: E402
from ldmkit.pipeline import LatentDiffusion, LDMConfig  # noqa: E402
from ldmkit.unet import UNET_PRESETS  # noqa: E402

LOAD = """
import resource, sys, time, torch
import ldmkit
from ldmkit.interop.foreign_models import load_foreign
path, dtype, config, text_encoder = sys.argv[1], getattr(torch, sys.argv[2]), *(a or None for a in sys.argv[3:])
start = time.perf_counter()
model, _ = load_foreign(path, config, text_encoder=text_encoder, unet_dtype=dtype)
seconds = time.perf_counter() - start
unet = str(next(model.unet.parameters()).dtype).removeprefix("torch.")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, seconds, unet, ldmkit.__file__)
"""
CHECKPOINT, YAML, CLIP = "model.safetensors", "v1-inference.yaml", "clip"  # the compvis folder's files
V1_INFERENCE = {"model": {  # SD v1's v1-inference.yaml (its lr scheduler left out)
    "base_learning_rate": 1.0e-4, "target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": {
        "linear_start": 0.00085, "linear_end": 0.012, "num_timesteps_cond": 1, "log_every_t": 200,
        "timesteps": 1000, "first_stage_key": "jpg", "cond_stage_key": "txt", "image_size": 64, "channels": 4,
        "cond_stage_trainable": False, "conditioning_key": "crossattn", "monitor": "val/loss_simple_ema",
        "scale_factor": 0.18215, "use_ema": False,
        "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": {
            "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
            "attention_resolutions": [4, 2, 1], "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "num_heads": 8,
            "use_spatial_transformer": True, "transformer_depth": 1, "context_dim": 768, "use_checkpoint": True,
            "legacy": False}},
        "first_stage_config": {"target": "ldm.models.autoencoder.AutoencoderKL", "params": {
            "embed_dim": 4, "monitor": "val/rec_loss", "ddconfig": {
                "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0},
            "lossconfig": {"target": "torch.nn.Identity"}}},
        "cond_stage_config": {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder"}}}}


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


def random_sd(cfg: LDMConfig) -> LatentDiffusion:
    """The SD-size model with random weights, its CLIP text encoder included (its folder holds no weights to
    read: training refuses that, so it is made empty here and filled with N(0, 0.02²), as CLIP initialises)."""
    torch.manual_seed(0)
    conditioner = build_conditioner(cfg.conditioning, empty_clip=True)
    with torch.no_grad():
        for tensor in conditioner.parameters():
            tensor.normal_(0.0, 0.02)
    return LatentDiffusion(cfg, conditioner=conditioner)


def write_diffusers(folder: Path) -> None:
    """The SD-size pipeline folder, random weights (float32)."""
    from ldmkit.interop.diffusers_folders import save_diffusers_folder

    with tempfile.TemporaryDirectory() as tmp:
        clip = clip_folder(Path(tmp) / "clip")
        text = TextConfig(encoder="clip", embed_dim=768, max_tokens=77, weights_path=str(clip), vocab_path=str(clip))
        cfg = LDMConfig(SD["ae"], UNET_PRESETS[SD["unet"]], SD_DIFFUSION,
                        ConditioningConfig(kind="text", drop_prob=0.0, trainable=False, text=text),
                        scale_factor=0.18215, image_size=SD["side"])
        save_diffusers_folder(random_sd(cfg), folder)


def write_compvis(folder: Path) -> None:
    """The SD-size CompVis checkpoint (random weights, float32), its YAML and CLIP folder."""
    import yaml
    from safetensors.torch import save_file

    from ldmkit.interop.compvis_config import translate
    from ldmkit.interop.compvis_weights import to_compvis

    clip = clip_folder(folder / CLIP)
    (folder / YAML).write_text(yaml.safe_dump(V1_INFERENCE))
    state = to_compvis(random_sd(translate(V1_INFERENCE, str(clip.resolve())).config))
    state.setdefault("cond_stage_model.transformer.text_model.embeddings.position_ids", torch.arange(77)[None])
    save_file(state, str(folder / CHECKPOINT), metadata={"format": "pt"})


FORMATS = {  # --format: (write the folder, the file or folder loaded, YAML config, text encoder folder)
    "diffusers": (write_diffusers, "model_index.json", None, None),
    "compvis": (write_compvis, CHECKPOINT, YAML, CLIP),
}


def load(folder: Path, fmt: str, dtype: str, checkout: Path | None) -> dict:
    """One load in a fresh process, run in `checkout` (its ldmkit first on the path) or in this one."""
    root = (checkout or Path(__file__).resolve().parents[1]).resolve()
    _, loaded, config, text_encoder = FORMATS[fmt]
    path = folder.resolve() / loaded if fmt == "compvis" else folder.resolve()
    extra = [str(folder.resolve() / name) if name else "" for name in (config, text_encoder)]
    done = subprocess.run([sys.executable, "-c", LOAD, str(path), dtype, *extra], capture_output=True, text=True,
                          cwd=root, env=dict(os.environ, PYTHONPATH=str(root)))
    if done.returncode:
        raise SystemExit(f"loading with the UNet in {dtype} failed: {done.stderr.strip().splitlines()[-3:]}")
    peak_kib, seconds, unet, module = done.stdout.split()
    if not Path(module).is_relative_to(root):
        raise SystemExit(f"the load ran {module}, not the ldmkit in {root}")
    return {"unet_dtype": dtype, "unet_loaded": unet, "peak_rss_gib": round(int(peak_kib) / 2**20, 2),
            "seconds": round(float(seconds), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", type=Path, required=True, help="the model's folder; written when it does not exist")
    p.add_argument("--format", choices=list(FORMATS), default="diffusers", help="the layout of --folder")
    p.add_argument("--dtypes", default="bfloat16,float32", help="comma-separated UNet dtypes, one load each")
    p.add_argument("--checkout", type=Path, help="a folder holding the ldmkit package to load with")
    args = p.parse_args()
    write, loaded = FORMATS[args.format][:2]
    if not (args.folder / loaded).is_file():  # in a process of its own: a child's ru_maxrss starts at least at its
        args.folder.mkdir(parents=True, exist_ok=True)  # parent's peak, so this one must stay small
        writer = multiprocessing.get_context("spawn").Process(target=write, args=(args.folder,))
        writer.start()
        writer.join()
        if writer.exitcode:
            raise SystemExit(f"writing {args.folder} failed (exit code {writer.exitcode})")
    size = sum(f.stat().st_size for f in args.folder.rglob("*") if f.is_file())
    rows = [load(args.folder, args.format, dtype, args.checkout) for dtype in args.dtypes.split(",")]
    print(f"{args.format} folder {size / 2**30:.2f} GiB; ldmkit from {args.checkout or 'this checkout'}")
    print("| UNet dtype | UNet loaded in | peak RSS | wall s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['unet_dtype']} | {r['unet_loaded']} | {r['peak_rss_gib']} GiB | {r['seconds']} |")


if __name__ == "__main__":
    main()

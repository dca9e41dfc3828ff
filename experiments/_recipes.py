"""The recipes of experiments/recipe.py: ldmkit config overrides, and diffusers' usual recipe as a baseline.

Each ldmkit recipe is a list of --set overrides of configs/ldm/emoji64-kl-f4.yaml; "base" is the
config as shipped before this study (its recipe is spelt out so that changing the shipped config
does not change the row).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ldmkit.checkpoint import save_model_file
from ldmkit.config import load_config, to_dict
from ldmkit.data.latents import LatentCacheDataset
from ldmkit.data.loader import train_loader
from ldmkit.training.latent_cache import build_latent_cache, cache_folder, latent_std
from ldmkit.training.ldm import LDMRunConfig, load_first_stage

# the shipped recipe before the study (configs/ldm/emoji64-kl-f4.yaml at 2026-12-04)
BASE = ["unet.model_channels=64", "unet.channel_mult=[1,2,4]", "unet.num_res_blocks=1",
        "unet.attention_resolutions=[2,4]", "unet.num_head_channels=32", "diffusion.prediction=eps",
        "diffusion.min_snr_gamma=null", "train.batch_size=32", "train.lr=3.0e-4", "train.warmup_steps=50",
        "train.lr_schedule=constant", "train.precision=bf16", "ema_decay=0.999", "center_latents=false"]
COSINE = ["train.lr_schedule=cosine", "train.warmup_steps=100"]
RECIPES: dict[str, list[str]] = {
    "base": BASE,
    "cosine": [*BASE, *COSINE],
    "cosine-lr1e-3": [*BASE, *COSINE, "train.lr=1.0e-3"],
    "v": [*BASE, *COSINE, "train.lr=1.0e-3", "diffusion.prediction=v"],
    "minsnr": [*BASE, *COSINE, "train.lr=1.0e-3", "diffusion.min_snr_gamma=5.0"],
    "v-minsnr": [*BASE, *COSINE, "train.lr=1.0e-3", "diffusion.prediction=v", "diffusion.min_snr_gamma=5.0"],
    "bs64": [*BASE, *COSINE, "train.lr=1.0e-3", "train.batch_size=64"],
    "bs16": [*BASE, *COSINE, "train.lr=1.0e-3", "train.batch_size=16"],
    "wide": [*BASE, *COSINE, "train.lr=1.0e-3", "unet.model_channels=96", "unet.num_head_channels=32"],
    "deep": [*BASE, *COSINE, "train.lr=1.0e-3", "unet.num_res_blocks=2"],
    "fp32": [*BASE, *COSINE, "train.lr=1.0e-3", "train.precision=fp32"],
    "ema9995": [*BASE, *COSINE, "train.lr=1.0e-3", "ema_decay=0.9995"],
    "ema99": [*BASE, *COSINE, "train.lr=1.0e-3", "ema_decay=0.99"],
    "lr2e-3": [*BASE, *COSINE, "train.lr=2.0e-3"],
    "lognormal": [*BASE, "diffusion.timestep_sampling=lognormal"],
    "lognormal-v": [*BASE, "diffusion.timestep_sampling=lognormal", "diffusion.prediction=v"],
    "minsnr-const": [*BASE, "diffusion.min_snr_gamma=5.0"],
    "v-const": [*BASE, "diffusion.prediction=v"],
    "minsnr-fast": [*BASE, *COSINE, "train.lr=1.0e-3", "diffusion.min_snr_gamma=5.0", "unet.attention_resolutions=[4]"],
    "minsnr-bs64": [*BASE, *COSINE, "train.lr=1.0e-3", "diffusion.min_snr_gamma=5.0", "train.batch_size=64"],
    "minsnr-wide": [*BASE, *COSINE, "train.lr=1.0e-3", "diffusion.min_snr_gamma=5.0", "unet.model_channels=96"],
    "minsnr-lognormal": [*BASE, *COSINE, "train.lr=1.0e-3", "diffusion.min_snr_gamma=5.0",
                         "diffusion.timestep_sampling=lognormal"],
    "minsnr-ema9995": [*BASE, *COSINE, "train.lr=1.0e-3", "diffusion.min_snr_gamma=5.0", "ema_decay=0.9995"],
    "minsnr-fp32": [*BASE, *COSINE, "train.lr=1.0e-3", "diffusion.min_snr_gamma=5.0", "train.precision=fp32"],
    "minsnr-deep": [*BASE, *COSINE, "train.lr=1.0e-3", "diffusion.min_snr_gamma=5.0", "unet.num_res_blocks=2"],
}


def diffusers_recipe(args) -> tuple[Path, float]:
    """diffusers' train_unconditional recipe on the same cached latents for the same time; the trained
    UNet converted into an ldmkit model file (same first stage and scale) for the common protocol."""
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    run = Path(args.runs) / "diffusers"
    model_file = run / "model.safetensors"
    if model_file.is_file():
        return run, json.loads((run / "budget.json").read_text())["images_per_second"]
    cfg = load_config(LDMRunConfig, "configs/ldm/emoji64-kl-f4.yaml",
                      [f"first_stage={args.first_stage}", "train.batch_size=32"])
    stage = load_first_stage(cfg.first_stage)
    cache = LatentCacheDataset(build_latent_cache(stage, cfg.data, torch.device("cpu"),
                                                  folder=cache_folder(stage, cfg.data)))
    scale = 1.0 / latent_std(cache)
    c = stage.config.latent_channels
    unet = UNet2DModel(sample_size=16, in_channels=c, out_channels=c, layers_per_block=1,
                       block_out_channels=(64, 128, 256), attention_head_dim=32, attn_norm_num_groups=32,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
    batch = 32
    loader = iter(train_loader(cache, batch, seed=0))

    def step(i: int) -> float:
        z0 = next(loader)["latent"] * scale  # (B, c, 16, 16), a posterior sample of each cached latent
        noise = torch.randn_like(z0)
        t = torch.randint(0, 1000, (len(z0),))
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the same precision as ldmkit's recipes
            pred = unet(scheduler.add_noise(z0, noise, t), t).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_schedule.step()
        opt.zero_grad()
        ema.step(unet.parameters())
        return loss.item()

    lr_schedule = get_cosine_schedule_with_warmup(opt, 500, 10 ** 9)  # (re-made below with the real length)
    for i in range(10):
        step(i)  # warm-up
    start = time.perf_counter()
    for i in range(args.probe_steps):
        step(i)
    rate = args.probe_steps * batch / (time.perf_counter() - start)
    steps = max(1, round(args.minutes * 60 * rate / batch))
    print(f"[diffusers] {rate:.1f} img/s measured: {steps} steps of {batch} = {args.minutes:g} min", flush=True)
    torch.manual_seed(0)  # from scratch, as every recipe
    unet = UNet2DModel.from_config(unet.config)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
    lr_schedule = get_cosine_schedule_with_warmup(opt, 500, steps)
    for i in range(steps):
        loss = step(i)
        if i % 100 == 0:
            print(f"[diffusers] step {i}/{steps} loss {loss:.4f}", flush=True)
    ema.copy_to(unet.parameters())
    run.mkdir(parents=True, exist_ok=True)
    write_ldmkit_model(unet, stage, scale, model_file)
    (run / "budget.json").write_text(json.dumps({"images_per_second": rate, "steps": steps, "batch": batch,
                                                 "minutes": args.minutes, "loss": loss}) + "\n")
    return run, rate


def write_ldmkit_model(unet, stage, scale: float, path: Path) -> None:
    """A diffusers UNet2DModel + ldmkit first stage as an ldmkit model file (DDPM linear betas, eps)."""
    from ldmkit.diffusion.schedule import DiffusionConfig
    from ldmkit.interop import diffusers_unet
    from ldmkit.pipeline.checkpoint import KIND, ldm_tensors
    from ldmkit.pipeline.model import LatentDiffusion, LDMConfig

    ucfg = diffusers_unet.config_from_diffusers("UNet2DModel", dict(unet.config))
    diffusion = DiffusionConfig(schedule="linear", beta_start=1e-4, beta_end=0.02, prediction="eps")
    model = LatentDiffusion(LDMConfig(stage.config, ucfg, diffusion, scale_factor=scale, image_size=64))
    model.unet.load_state_dict(diffusers_unet.from_diffusers_state_dict(unet.state_dict(), ucfg))
    model.first_stage.load_state_dict(stage.state_dict())
    save_model_file(path, ldm_tensors(model), KIND, to_dict(model.config))


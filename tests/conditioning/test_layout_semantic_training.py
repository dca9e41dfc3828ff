"""Layout-to-image and semantic synthesis learn to use their condition (short pixel-space runs).

Each test trains a tiny pixel-space UNet (identity first stage) on 16 px emoji scenes with the
real trainer, then checks on held-out scenes that (a) the condition changes the sample drawn
from the same seed, and the sample follows it; (b) the training loss with the true conditions is
lower than with the conditions shuffled across the batch, at fixed images, t and noise.
v-prediction: at high noise its target is mostly the clean image, which only the condition can
tell, so the conditional path is learned within a few hundred steps.
"""

import torch
from torch.utils.data import default_collate

import ldmkit
from ldmkit.config import from_dict
from ldmkit.data.boxes import PAD_LABEL
from ldmkit.data.conditions import batch_condition
from ldmkit.data.scenes import EmojiScenes
from ldmkit.diffusion.loss import loss_per_sample
from ldmkit.sampling.guidance import conditioned
from ldmkit.training.ldm import LDMRunConfig, train_ldm

RES = 16
UNET = {"out_channels": 3, "model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1, "num_heads": 2}
TASKS = {
    "layout": ({"kind": "layout", "drop_prob": 0.0,
                "layout": {"embed_dim": 64, "max_boxes": 4, "coord_bins": 16, "layers": 2}},
               {**UNET, "in_channels": 3, "attention_resolutions": [1, 2], "use_spatial_transformer": True,
                "context_dim": 64}, 300, 2.0e-3),
    "semantic": ({"kind": "semantic", "drop_prob": 0.0, "semantic": {"factor": 1}},
                 {**UNET, "in_channels": 3 + 11, "attention_resolutions": []}, 60, 2.0e-3),
}


def train_tiny(kind: str, run_dir):
    conditioning, unet, steps, lr = TASKS[kind]
    cfg = from_dict(LDMRunConfig, {
        "first_stage": "identity", "unet": unet, "conditioning": conditioning,
        "diffusion": {"prediction": "v"},
        "data": {"dataset": "scenes", "resolution": RES, "max_boxes": 4},
        "train": {"steps": steps, "batch_size": 8, "lr": lr, "warmup_steps": 10, "log_every": 50,
                  "image_every": 10_000, "ckpt_every": 10_000},
        "ema_decay": 0.9, "sample_steps": 2, "sample_n": 2,
    })
    train_ldm(cfg, run_dir)
    return ldmkit.load(run_dir, device="cpu")


def held_out(n: int, resolution: int = RES) -> dict:
    scenes = EmojiScenes(resolution, "val", count=n)
    return default_collate([scenes[i] for i in range(n)])


def shuffled(raw):
    return {k: v.roll(1, 0) for k, v in raw.items()} if isinstance(raw, dict) else raw.roll(1, 0)


def loss_gap(model, batch: dict) -> tuple[float, float]:
    """Mean training loss with the true and with shuffled conditions, at fixed t (spread over the
    schedule) and noise."""
    x = batch["image"]
    t = torch.linspace(0, model.schedule.num_timesteps - 1, x.shape[0]).long()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    raw = batch_condition(model.config.conditioning, batch, [])
    losses = []
    with torch.no_grad():
        for condition in (raw, shuffled(raw)):
            cond = model.condition(condition)
            losses.append(loss_per_sample(conditioned(model.unet, cond), x, t, noise, model.schedule, "v").mean())
    return float(losses[0]), float(losses[1])


def ink(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W): how far each pixel is from the white background."""
    return (1 - images).mean(dim=1)


def test_layout_to_image_follows_its_boxes(tmp_path):
    pipe = train_tiny("layout", tmp_path / "layout")
    batch = held_out(64)
    # (b) the loss knows the true layouts from shuffled ones
    true, wrong = loss_gap(pipe.model, batch)
    assert true < 0.97 * wrong, (true, wrong)
    # (a) one seed, 16 layouts: the layout changes the sample, and ink goes where its boxes are
    raw = {"boxes": batch["boxes"][:16], "labels": batch["box_labels"][:16]}
    own = pipe.decode(pipe.latents([0] * 16, raw, steps=10))
    other = pipe.decode(pipe.latents([0] * 16, shuffled(raw), steps=10))
    # a model that ignored the layout would give identical images (same seed): measured 0.044
    assert (own - other).abs().mean() > 0.02
    ys, xs = torch.meshgrid(torch.arange(RES) + 0.5, torch.arange(RES) + 0.5, indexing="ij")
    inside = torch.zeros(16, RES, RES, dtype=torch.bool)
    for i in range(16):
        for box, label in zip(raw["boxes"][i] * RES, raw["labels"][i]):
            if label != PAD_LABEL:
                inside[i] |= (xs > box[0]) & (xs < box[2]) & (ys > box[1]) & (ys < box[3])
    assert ink(own)[inside].mean() > ink(own)[~inside].mean() + 0.04  # measured: 0.27 against 0.19


def test_semantic_synthesis_follows_its_map_also_at_larger_sizes(tmp_path):
    pipe = train_tiny("semantic", tmp_path / "semantic")
    true, wrong = loss_gap(pipe.model, held_out(64))
    assert true < 0.9 * wrong, (true, wrong)
    for size in (RES, 2 * RES, 4 * RES):  # convolutional sampling: the map's size is the sample's
        maps = held_out(8, resolution=size)["label_map"]  # (8, size, size)
        own = pipe.decode(pipe.latents([0] * 8, maps, steps=10, height=size, width=size))
        other = pipe.decode(pipe.latents([0] * 8, shuffled(maps), steps=10, height=size, width=size))
        assert own.shape == (8, 3, size, size)
        assert (own - other).abs().mean() > 0.05, size
        background = maps == 0
        assert ink(own)[~background].mean() > ink(own)[background].mean() + 0.2, size
    assert pipe(n=1, steps=4, condition=maps[0])[0].size == (4 * RES, 4 * RES)  # the size comes from the map

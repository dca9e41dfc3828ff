"""Super-resolution and inpainting models learn to use their condition (short pixel-space runs).

Each test trains a tiny pixel-space UNet (identity first stage, 32 px OpenMoji) for 60 steps with
the real trainer, then checks on held-out images that (a) a sample follows its condition: the
same seed with another image's condition gives another sample, one that matches the condition's
image, not the seed's; (b) the training loss with the true conditions is lower than with the
conditions shuffled across the batch, at fixed images, t and noise.
"""

import torch
import torch.nn.functional as F

import ldmkit
from ldmkit.config import from_dict
from ldmkit.data.conditions import batch_condition
from ldmkit.data.openmoji import OpenMojiDataset
from ldmkit.data.transforms import stream_generators
from ldmkit.diffusion.noise import seeded_generators
from ldmkit.training.batches import CONDITION_STREAM
from ldmkit.training.ldm import LDMRunConfig, train_ldm

CONDITIONS = {  # pixel space: the LR image (8 px) is upsampled x4 to the 32 px "latent"
    "low_res": ({"kind": "low_res", "drop_prob": 0.0, "low_res": {"stages": 2, "multiplier": 2.0}}, 3 + 3),
    "inpaint": ({"kind": "inpaint", "drop_prob": 0.0}, 3 + 3 + 1),
}


def train_tiny(kind: str, run_dir):
    conditioning, in_channels = CONDITIONS[kind]
    cfg = from_dict(LDMRunConfig, {
        "first_stage": "identity",
        "unet": {"in_channels": in_channels, "out_channels": 3, "model_channels": 32, "channel_mult": [1, 2],
                 "num_res_blocks": 1, "attention_resolutions": [], "num_heads": 2},
        "diffusion": {"prediction": "v"},  # learns clean samples within a few dozen steps
        "conditioning": conditioning,
        "data": {"resolution": 32},
        "train": {"steps": 60, "batch_size": 12, "lr": 3.0e-3, "warmup_steps": 10, "log_every": 20,
                  "image_every": 1000, "ckpt_every": 1000},
        "ema_decay": 0.8, "sample_steps": 2, "sample_n": 2,
    })
    train_ldm(cfg, run_dir)
    return ldmkit.load(run_dir, device="cpu")


def held_out(n: int, start: int = 0) -> torch.Tensor:
    dataset = OpenMojiDataset(32, "val")
    return torch.stack([dataset[i]["image"] for i in range(start, start + n)])  # (n, 3, 32, 32)


def shuffled(raw):
    return {k: v.roll(1, 0) for k, v in raw.items()} if isinstance(raw, dict) else raw.roll(1, 0)


def check_condition_matters(pipe, distance):
    model = pipe.model
    images = held_out(8)
    raw = batch_condition(model.config.conditioning, {"image": images},
                          stream_generators(list(range(8)), CONDITION_STREAM))
    seeds = [0] * 8  # one seed for all: only the condition differs
    own = pipe.decode(pipe.latents(seeds, raw, steps=10))
    other = pipe.decode(pipe.latents(seeds, shuffled(raw), steps=10))
    # (a) the condition changes the sample, and the sample matches the condition's image
    assert (own - other).abs().mean() > 0.05
    d_own, d_other = distance(own, images, raw), distance(own, images.roll(1, 0), raw)
    assert d_own.mean() < 0.7 * d_other.mean()
    assert (d_own < d_other).float().mean() >= 0.75
    # (b) fixed batches, t and noise: the loss is lower with the true condition than with a shuffled one
    with torch.no_grad():
        for k in range(3):
            x = held_out(16, start=8 + 16 * k)
            batch_raw = batch_condition(model.config.conditioning, {"image": x},
                                        stream_generators(list(range(16)), CONDITION_STREAM))
            true = model.loss(x, model.condition(batch_raw), seeded_generators(range(16)))
            wrong = model.loss(x, model.condition(shuffled(batch_raw)), seeded_generators(range(16)))
            assert true < 0.8 * wrong


def test_super_resolution_follows_its_low_res_image(tmp_path):
    pipe = train_tiny("low_res", tmp_path / "sr")

    def low_pass_distance(sample, reference, raw):  # what the LR image determines: the 8x8 content
        return (F.avg_pool2d(sample, 4) - F.avg_pool2d(reference, 4)).pow(2).mean(dim=(1, 2, 3))

    check_condition_matters(pipe, low_pass_distance)


def test_inpainting_follows_its_masked_image(tmp_path):
    pipe = train_tiny("inpaint", tmp_path / "inpaint")

    def kept_region_distance(sample, reference, raw):  # what the masked image shows: the kept pixels
        keep = 1 - raw["mask"]
        return ((sample - reference).pow(2) * keep).sum(dim=(1, 2, 3)) / (3 * keep.sum(dim=(1, 2, 3)))

    check_condition_matters(pipe, kept_region_distance)

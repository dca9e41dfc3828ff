"""Training on a tiny image folder with unreadable files: it works, or fails at start-up with one clear error."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldmkit.config import from_dict
from ldmkit.data.folder import in_validation
from ldmkit.errors import DataError
from ldmkit.training.autoencoder import AutoencoderRunConfig, train_autoencoder
from ldmkit.training.ldm import LDMRunConfig, train_ldm


def names(in_val: bool, n: int) -> list[str]:
    """n file names that the hash split puts in validation (in_val) or in training, at val_fraction 0.05."""
    found = (f"img{i}.png" for i in range(10_000))
    return [name for name in found if in_validation(Path(name), 0.05) == in_val][:n]


def make_folder(root, good: list[str], broken: list[str]):
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in good:
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / name)
    for name in broken:
        (root / name).write_bytes(b"not an image")
    return root


def autoencoder_config(folder, batch_size: int = 1, steps: int = 3) -> AutoencoderRunConfig:
    return from_dict(AutoencoderRunConfig, {
        "model": {"kind": "kl", "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 2, "embed_dim": 2},
        "loss": {"perceptual_weight": 0, "disc_start": 1000, "disc_ch": 16, "disc_layers": 2},
        "data": {"dataset": "folder", "path": str(folder), "resolution": 16},
        "train": {"steps": steps, "batch_size": batch_size, "log_every": 1, "image_every": 1000, "ckpt_every": 1000},
        "eval_batches": 1})


def test_a_validation_split_of_unreadable_files_stops_the_run_before_it_trains(tmp_path):
    folder = make_folder(tmp_path / "images", good=names(False, 3), broken=names(True, 1))
    with pytest.raises(DataError, match=r"no readable sample among all 1 samples of the 'val' split of image folder "
                                        r".*; replace or delete the unreadable files, or add images \(a validation "
                                        r"split also grows with data.val_fraction\)"):
        train_autoencoder(autoencoder_config(folder), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_a_training_split_of_unreadable_files_stops_the_run_before_it_trains(tmp_path):
    folder = make_folder(tmp_path / "images", good=names(True, 1), broken=names(False, 2))
    with pytest.raises(DataError, match="no readable sample among all 2 samples of the 'train' split"):
        train_autoencoder(autoencoder_config(folder), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_batches_of_unreadable_files_only_are_skipped_and_counted(tmp_path):
    folder = make_folder(tmp_path / "images", good=names(False, 1) + names(True, 1), broken=names(False, 3)[1:])
    train_autoencoder(autoencoder_config(folder), tmp_path / "run")  # batches of one: some hold a broken file only
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["skipped_images"] > 0


def test_a_diffusion_run_on_unreadable_images_stops_before_it_trains(tmp_path):
    folder = make_folder(tmp_path / "images", good=[], broken=names(False, 2))
    cfg = from_dict(LDMRunConfig, {
        "unet": {"in_channels": 3, "out_channels": 3, "model_channels": 32, "channel_mult": [1],
                 "num_res_blocks": 1, "attention_resolutions": [], "num_heads": 1},
        "data": {"dataset": "folder", "path": str(folder), "resolution": 16},
        "train": {"steps": 2, "batch_size": 2}})
    with pytest.raises(DataError, match="no readable sample among all 2 samples of the 'train' split"):
        train_ldm(cfg, tmp_path / "run")  # pixel space: the images are read every step, checked at start-up
    assert not (tmp_path / "run" / "metrics.jsonl").exists()

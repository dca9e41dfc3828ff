"""`data.crop: random` with the latent cache: K random-crop views per image, one drawn per sample seed."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ldmkit.autoencoder.checkpoint import save_autoencoder
from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.autoencoder.model import build_autoencoder
from ldmkit.checkpoint import latest_checkpoint
from ldmkit.config import from_dict
from ldmkit.data import DataConfig
from ldmkit.data.folder import ImageFolderDataset
from ldmkit.data.latents import LatentCacheDataset
from ldmkit.data.transforms import view_seed
from ldmkit.errors import ConfigError
from ldmkit.training.latent_cache import build_latent_cache, cache_folder, cached_views
from ldmkit.training.ldm import LDMRunConfig, train_ldm

CPU = torch.device("cpu")


@pytest.fixture
def folder(tmp_path):
    """Six random 24 x 60 images in two classes: read at 16 px, a crop has 25 positions across."""
    rng = np.random.default_rng(0)
    for i in range(6):
        path = tmp_path / "images" / ("ab"[i % 2]) / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 60, 3), dtype=np.uint8)).save(path)
    return tmp_path / "images"


def data(tmp_path, folder, **changes) -> DataConfig:
    return DataConfig(**{"dataset": "folder", "path": str(folder), "resolution": 16, "crop": "random",
                         "flip": True, "val_fraction": 0.0, "cache_dir": str(tmp_path / "cache"), **changes})


def tiny_autoencoder(kind: str):
    """f = 2 (16 px -> 2 x 8 x 8), random weights: enough to tell crops apart."""
    return build_autoencoder(AutoencoderConfig(kind=kind, ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=2,
                                               embed_dim=2, n_embed=16, vq_restart_every=0)).eval()


def test_the_cache_holds_k_random_crops_of_each_image_each_also_flipped(tmp_path, folder):
    cfg = data(tmp_path, folder)
    vq = tiny_autoencoder("vq")  # the cache keeps its latents as they are: no posterior noise to compare around
    root = build_latent_cache(copy.deepcopy(vq), cfg, CPU, views=3)  # (the builder converts its convolutions)
    assert root == cache_folder(vq, cfg, views=3)
    cache = LatentCacheDataset(root)
    assert (len(cache), cache.views, cache.flip) == (6, 3, True)
    stored = load_file(str(root / "shard-00000.safetensors"))
    assert stored["latent"].shape == (18, 2, 8, 8) and stored["latent_flip"].shape == (18, 2, 8, 8)

    crops = ImageFolderDataset(folder, 16, split="train", crop="random", val_fraction=0.0)
    centre = ImageFolderDataset(folder, 16, split="train", val_fraction=0.0)
    with torch.no_grad():
        for i in range(6):
            views = torch.stack([crops[(i, view_seed(i, k))]["image"] for k in range(3)])  # (3, 3, 16, 16)
            torch.testing.assert_close(stored["latent"][3 * i:3 * i + 3], vq.encode(views), rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(stored["latent_flip"][3 * i:3 * i + 3], vq.encode(views.flip(-1)),
                                       rtol=1e-4, atol=1e-4)
            assert stored["label"][3 * i:3 * i + 3].tolist() == [centre[i]["label"]] * 3 == [i // 3] * 3
            assert len({v.sum().item() for v in views}) >= 2  # random crops, not one view repeated
            assert not all(torch.equal(v, centre[i]["image"]) for v in views)  # and not the centre crop
    # the same seed reads the same view (and flip) of an image; over seeds, every view and flip is read
    rows = torch.cat([stored["latent"], stored["latent_flip"]])
    own = {i: [3 * i, 3 * i + 1, 3 * i + 2, 18 + 3 * i, 19 + 3 * i, 20 + 3 * i] for i in range(6)}
    for i in range(6):
        picked = set()
        for seed in range(40):
            z = cache[(i, seed)]["latent"]
            assert torch.equal(z, cache[(i, seed)]["latent"])
            matches = {r for r in range(36) if torch.equal(rows[r], z)}  # two views may share a crop
            assert matches and matches <= set(own[i])
            picked |= matches
        assert sorted(picked) == own[i]


def test_one_view_is_one_random_crop_not_the_centre(tmp_path, folder):
    vq, cfg = tiny_autoencoder("vq"), data(tmp_path, folder, flip=False)
    stored = load_file(str(build_latent_cache(copy.deepcopy(vq), cfg, CPU, views=1) / "shard-00000.safetensors"))
    crops = ImageFolderDataset(folder, 16, split="train", crop="random", val_fraction=0.0)
    centre = ImageFolderDataset(folder, 16, split="train", val_fraction=0.0)
    first = torch.stack([crops[(i, view_seed(i, 0))]["image"] for i in range(6)])
    with torch.no_grad():
        torch.testing.assert_close(stored["latent"], vq.encode(first), rtol=1e-4, atol=1e-4)
    assert set(stored) == {"latent", "label"}
    assert not all(torch.equal(first[i], centre[i]["image"]) for i in range(6))


def test_the_number_of_views_is_part_of_the_cache_key(tmp_path, folder):
    vq, cfg = tiny_autoencoder("vq"), data(tmp_path, folder)
    assert len({cache_folder(vq, cfg, views=v) for v in (1, 3, 4)}) == 3
    assert cached_views(cfg, 4) == 4 and cached_views(cfg, 0) == 0
    assert cached_views(data(tmp_path, folder, crop="center"), 4) == 1  # a centre crop is one view
    assert cached_views(DataConfig(crop="random"), 4) == 1  # OpenMoji renders are square: nothing to crop
    with pytest.raises(ConfigError, match="latent_cache_views: 0 means no cache"):
        build_latent_cache(vq, cfg, CPU, views=0)
    with pytest.raises(ConfigError, match="'latent_cache_views' must be 0 or more, got -1"):
        from_dict(LDMRunConfig, {"latent_cache_views": -1, "unet": {"num_heads": 1}})


def test_edited_added_or_removed_files_make_another_cache(tmp_path, folder):
    import os

    from ldmkit.data.config import data_fingerprint

    vq, cfg = tiny_autoencoder("vq"), data(tmp_path, folder)
    seen = [cache_folder(vq, cfg)]
    image = folder / "b" / "1.png"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))  # edited in place
    seen.append(cache_folder(vq, cfg))
    (folder / "b" / "1.txt").write_text("a caption")  # a caption sidecar added
    seen.append(cache_folder(vq, cfg))
    (folder / "a" / "0.png").unlink()
    seen.append(cache_folder(vq, cfg))
    assert len(set(seen)) == 4 and cache_folder(vq, cfg) == seen[-1]  # and nothing else changes it
    assert data_fingerprint(DataConfig()) == ""  # OpenMoji: its package version names it
    assert data_fingerprint(cfg).startswith("6 files, sha1 ")  # 5 images and the caption


def test_balanced_training_draws_classes_from_the_cache_labels_and_resumes_exactly(tmp_path, folder, capsys):
    (folder / "a" / "extra.png").write_bytes((folder / "a" / "0.png").read_bytes())  # a: 4 images, b: 3
    first_stage = tmp_path / "kl.safetensors"
    save_autoencoder(first_stage, tiny_autoencoder("kl"))
    cfg = run_config(tmp_path, folder, first_stage, 2)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, balance="classes"))
    train_ldm(cfg, tmp_path / "full")
    assert "data.balance: classes: each of 2 classes is drawn 1/2 of the time (b: 3 images, each drawn 1.3x as " \
           "often as one of a: 4)" in capsys.readouterr().out
    kl = tiny_autoencoder("kl")  # how the stream is drawn is no part of what the cache holds
    assert cache_folder(kl, cfg.data) == cache_folder(kl, dataclasses.replace(cfg.data, balance="none"))
    cache = LatentCacheDataset(next((tmp_path / "cache" / "latents").iterdir()))
    assert cache.labels().tolist() == ImageFolderDataset(folder, 16, val_fraction=0.0).labels().tolist()
    train_ldm(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=1)), tmp_path / "split")
    train_ldm(cfg, tmp_path / "split", resume=True)
    a, b = (load_file(str(latest_checkpoint(tmp_path / run) / "model.safetensors")) for run in ("full", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def run_config(tmp_path, folder, first_stage, steps: int, **more) -> LDMRunConfig:
    return from_dict(LDMRunConfig, {
        "first_stage": str(first_stage),
        "unet": {"in_channels": 2, "out_channels": 2, "model_channels": 32, "channel_mult": [1],
                 "num_res_blocks": 1, "attention_resolutions": [], "num_heads": 1, "sample_size": 8},
        "data": {"dataset": "folder", "path": str(folder), "resolution": 16, "crop": "random", "flip": True,
                 "val_fraction": 0.0, "cache_dir": str(tmp_path / "cache")},
        "train": {"steps": steps, "batch_size": 2, "log_every": 1, "image_every": 100, "ckpt_every": 1,
                  "warmup_steps": 1},
        "ema_decay": 0.9, "latent_cache_views": 2, "sample_steps": 1, "sample_n": 1, **more})


def test_training_reads_the_views_reproducibly_and_resumes_exactly(tmp_path, folder, capsys):
    first_stage = tmp_path / "kl.safetensors"
    save_autoencoder(first_stage, tiny_autoencoder("kl"))
    train_ldm(run_config(tmp_path, folder, first_stage, 2), tmp_path / "full")
    assert "latent cache: 2 random-crop views per image (+ flips) of 6 images" in capsys.readouterr().out
    train_ldm(run_config(tmp_path, folder, first_stage, 1), tmp_path / "split")
    train_ldm(run_config(tmp_path, folder, first_stage, 2), tmp_path / "split", resume=True)
    assert len(list((tmp_path / "cache" / "latents").iterdir())) == 1  # built once, read by all three
    a, b = (load_file(str(latest_checkpoint(tmp_path / run) / "model.safetensors")) for run in ("full", "split"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    train_ldm(run_config(tmp_path, folder, first_stage, 1, latent_cache_views=0), tmp_path / "on-the-fly")
    assert "data.crop: random with latent_cache_views: 0: encoding every batch on the fly" in capsys.readouterr().out
    assert len(list((tmp_path / "cache" / "latents").iterdir())) == 1  # no cache for it

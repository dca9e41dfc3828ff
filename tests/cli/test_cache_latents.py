"""`ldmkit cache-latents CONFIG`: the dataset encoded once by the config's first stage, then read by `ldmkit train`."""

import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from ldmkit.autoencoder.checkpoint import load_autoencoder
from ldmkit.checkpoint import load_model_file
from ldmkit.data.latents import LatentCacheDataset
from ldmkit.data.openmoji import OpenMojiDataset
from ldmkit.training.latent_cache import latent_samples


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """name -> (inode, mtime in ns) of every file: a rebuilt cache has new ones."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_cache_is_built_once_reused_and_read_by_training(tmp_path, tiny, tiny_autoencoder, capsys):
    sets = [arg for value in tiny.ldm_sets(tiny.configs / "ldm" / "emoji64-kl-f4.yaml", tiny_autoencoder, 1)
            for arg in ("--set", value)]
    tiny.cli("cache-latents", tiny.configs / "ldm" / "emoji64-kl-f4.yaml", *sets)
    printed = capsys.readouterr().out
    (folder,) = (tiny.cache / "latents").iterdir()
    assert str(folder) in printed and re.search(r"\b77 latents\b", printed)

    # what it holds: the posterior moments of each training image and of its mirror image, with labels
    cache = LatentCacheDataset(folder)
    emoji = OpenMojiDataset(32, "train", cache_dir=tiny.cache, classes=["activities"])
    assert len(cache) == len(emoji) == 77 and cache.flip
    with safe_open(str(folder / "shard-00000.safetensors"), framework="pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    assert set(stored) == {"mean", "logvar", "mean_flip", "logvar_flip", "label"}
    images = torch.stack([emoji[i]["image"] for i in range(len(emoji))])
    with torch.no_grad():
        posterior = load_autoencoder(tiny_autoencoder).encode(images)
        mirrored = load_autoencoder(tiny_autoencoder).encode(images.flip(-1))
    torch.testing.assert_close(stored["mean"], posterior.mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(stored["logvar"], posterior.logvar, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(stored["mean_flip"], mirrored.mean, rtol=1e-4, atol=1e-4)
    assert stored["label"].tolist() == [emoji[i]["label"] for i in range(len(emoji))]

    # a second call finds it complete: nothing is encoded or written again
    before = files_of(folder)
    tiny.cli("cache-latents", tiny.configs / "ldm" / "emoji64-kl-f4.yaml", *sets)
    printed = capsys.readouterr().out
    assert str(folder) in printed and re.search(r"\b77 latents\b", printed)
    assert files_of(folder) == before and list((tiny.cache / "latents").iterdir()) == [folder]

    # training reads the cache: made 10x wider, its latents give a 10x smaller measured scale_factor
    tiny.widen_latent_cache(folder, 10.0)
    before = files_of(folder)
    run = tmp_path / "run"
    tiny.cli(*tiny.ldm(run, 1, tiny_autoencoder))
    assert files_of(folder) == before and list((tiny.cache / "latents").iterdir()) == [folder]
    samples = latent_samples(LatentCacheDataset(folder))  # (the main job's config centres each channel first)
    widened = float((samples - samples.mean((0, 2, 3), keepdim=True)).std())
    assert load_model_file(run)[1]["scale_factor"] == pytest.approx(1.0 / widened, rel=1e-6)
    with torch.no_grad():  # the untouched first stage's latents: a 10x larger scale_factor
        z = posterior.mean + posterior.logvar.mul(0.5).exp() * torch.randn(posterior.mean.shape)
    assert 1.0 / widened == pytest.approx(0.1 / float((z - z.mean((0, 2, 3), keepdim=True)).std()), rel=0.1)

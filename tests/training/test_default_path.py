"""The default path: `ldmkit train` over a real (tiny) KL autoencoder, for every shipped LDM config.

The first stage is trained by `ldmkit train-autoencoder` (the session fixture `tiny_autoencoder`);
the shipped configs run as they are, shrunk by --set overrides (tests/conftest.py: TinyRuns).
"""

from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.checkpoint import load_model_file
from ldmkit.conditioning.config import ConditioningConfig
from ldmkit.config import from_dict
from ldmkit.data.latents import LatentCacheDataset
from ldmkit.training.latent_cache import latent_std

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LDM_CONFIGS = sorted((CONFIGS / "ldm").glob("*.yaml"))


def scale_factor(run: Path) -> float:
    return load_model_file(run)[1]["scale_factor"]


def test_measured_scale_factor_is_one_over_the_latent_std_and_resume_keeps_it(tmp_path, tiny, tiny_autoencoder):
    run = tmp_path / "run"
    # emoji64-kl-f4.yaml: scale_factor null, latent_cache true (and centred latents: the next test)
    tiny.cli(*tiny.ldm(run, 1, tiny_autoencoder, "center_latents=false"))
    cache = LatentCacheDataset(tiny.latent_cache())
    measured = scale_factor(run)
    assert measured == 1.0 / latent_std(cache)
    with safe_open(str(cache.root / "shard-00000.safetensors"), framework="pt") as f:  # the same std, independently:
        mean = torch.cat([f.get_tensor("mean"), f.get_tensor("mean_flip")])  # Var z = Var(mean) + E[exp(logvar)]
        var = torch.cat([f.get_tensor("logvar"), f.get_tensor("logvar_flip")]).exp()
    assert len(cache) == 77 and mean.shape == (2 * 77, 3, 8, 8)  # the shipped KL-f4: 3 latent channels
    assert measured == pytest.approx(float(mean.var() + var.mean()) ** -0.5, rel=0.03)

    tiny.widen_latent_cache(cache.root, 3.0)  # a fresh measurement would now give a third of the value ...
    assert 1.0 / latent_std(LatentCacheDataset(cache.root)) == pytest.approx(measured / 3, rel=1e-4)
    tiny.cli("train", "--resume", run, "--set", "train.steps=2")
    assert scale_factor(run) == measured  # ... but a resumed run keeps the one it trained with
    assert set(tiny.losses(run)) == {1, 2}


@pytest.mark.parametrize("config", LDM_CONFIGS, ids=[c.stem for c in LDM_CONFIGS])
def test_the_unet_fits_the_first_stage_the_config_names(config):
    """runs/NAME, a shipped config's first stage, is what configs/autoencoder/NAME.yaml trains; the tiny
    runs below take their UNet's channels from the tiny first stage, so this is where the two must agree."""
    raw = yaml.safe_load(config.read_text())
    name = Path(raw["first_stage"]).name
    assert raw["first_stage"] == f"runs/{name}"
    ae = yaml.safe_load((CONFIGS / "autoencoder" / f"{name}.yaml").read_text())
    latent = from_dict(AutoencoderConfig, ae["model"]).latent_channels
    concat = from_dict(ConditioningConfig, raw.get("conditioning", {})).concat_channels(latent)
    assert (raw["unet"]["in_channels"], raw["unet"]["out_channels"]) == (latent + concat, latent)


@pytest.mark.parametrize("config", LDM_CONFIGS, ids=[c.stem for c in LDM_CONFIGS])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, tiny, tiny_autoencoder, config):
    """N = 3 steps in one go, or 1 step then `--resume` to 3: the same losses and final weights."""
    full, split = tmp_path / "full", tmp_path / "split"
    tiny.cli(*tiny.ldm(full, 3, tiny_autoencoder, config=config))
    tiny.cli(*tiny.ldm(split, 1, tiny_autoencoder, config=config))
    assert tiny.rows(split)[-1]["step"] == 1
    tiny.cli("train", "--resume", split, "--set", "train.steps=3")

    assert set(tiny.losses(full)) == {1, 2, 3}
    assert tiny.losses(split) == tiny.losses(full)
    a, b = tiny.weights(full), tiny.weights(split)
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    raw = yaml.safe_load(config.read_text())
    if raw["latent_cache"]:  # one cache for both runs; super-resolution and inpainting keep the images too
        with safe_open(str(tiny.latent_cache() / "shard-00000.safetensors"), framework="pt") as f:
            keys = set(f.keys())
        if raw.get("conditioning", {}).get("kind") in ("low_res", "inpaint"):
            assert {"image", "image_flip"} <= keys
        else:
            assert not any(k.startswith("image") for k in keys)
    else:
        assert not (tiny.cache / "latents").exists()



def test_center_latents_folds_the_measured_channel_means_into_the_first_stage_and_resume_keeps_them(
        tmp_path, tiny, tiny_autoencoder, cli_error):
    import ldmkit
    from ldmkit.autoencoder.checkpoint import load_autoencoder
    from ldmkit.data.openmoji import OpenMojiDataset
    from ldmkit.training.latent_cache import latent_samples

    run = tmp_path / "run"
    tiny.cli(*tiny.ldm(run, 1, tiny_autoencoder, "center_latents=true"))
    z = latent_samples(LatentCacheDataset(tiny.latent_cache()))  # (n, C, h, w) of the original first stage
    shift = z.mean((0, 2, 3)).view(1, -1, 1, 1)
    assert shift.abs().max() > 0.05  # (a first stage whose channels are off centre, so the test can fail)
    model = ldmkit.load(run).model
    assert model.config.scale_factor == pytest.approx(1.0 / float((z - shift).std()), rel=1e-5)
    dataset = OpenMojiDataset(32, "train", cache_dir=tiny.cache, classes=("activities",))
    images = torch.stack([dataset[i]["image"] for i in range(8)])
    original = load_autoencoder(tiny_autoencoder).eval()
    with torch.no_grad():
        mode = original.encode(images).mean  # the posterior mode of the first stage as trained
        assert torch.allclose(model.encode(images), (mode - shift) * model.config.scale_factor, atol=1e-4)
        assert torch.allclose(model.decode(model.encode(images)), original.decode(mode), atol=1e-4)
    line = cli_error(["train", "--resume", run, "--set", "center_latents=false", "--set", "train.steps=2"])
    assert f"cannot resume {run} with center_latents false: the run trains with true" in line
    line = cli_error(["train", "--resume", run, "--set", "scale_factor=0.5", "--set", "train.steps=2"])
    assert f"cannot resume {run} with scale_factor 0.5: the run trains with {model.config.scale_factor}" in line
    tiny.cli("train", "--resume", run, "--set", "train.steps=2")
    assert ldmkit.load(run).model.config.scale_factor == model.config.scale_factor


def test_center_latents_needs_a_kl_first_stage_and_says_so_before_writing_anything(tmp_path, tiny, cli_error):
    run = tmp_path / "pixels"
    line = cli_error(tiny.ldm(run, 1, "identity", "center_latents=true"))
    assert "center_latents re-centres a KL first stage's latents; this first stage is 'identity'" in line
    assert not run.exists()

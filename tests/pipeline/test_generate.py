import numpy as np
import pytest
import torch
from PIL import Image

import ldmkit
from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.checkpoint import load_model_file, save_model_file
from ldmkit.cli import main
from ldmkit.errors import ConfigError, ShapeError
from ldmkit.pipeline import read_params
from ldmkit.pipeline.checkpoint import KIND
from ldmkit.pipeline.tiling import balanced_tile, decode_tiled, first_stage_tile, tile_count


def test_load_and_sample_returns_pil_images_with_their_parameters(ldm_file):
    pipe = ldmkit.load(ldm_file, device="cpu")
    images = pipe(n=3, steps=4, sampler="ddim", seed=7, batch_size=2)
    assert [im.size for im in images] == [(16, 16)] * 3
    assert '"seed": 8' in images[1].info["ldmkit"]


def test_an_image_depends_on_its_seed_not_on_its_batch(ldm_file):
    pipe = ldmkit.load(ldm_file, device="cpu")
    together = pipe(n=3, steps=4, seed=10, batch_size=3)
    alone = pipe(n=1, steps=4, seed=11)
    a, b = np.asarray(together[1], dtype=int), np.asarray(alone[0], dtype=int)
    assert np.abs(a - b).max() <= 1  # float reduction order may differ with the batch size


def test_ema_weights_are_the_default(ldm_file):
    ema, raw = ldmkit.load(ldm_file, device="cpu"), ldmkit.load(ldm_file, device="cpu", use_ema=False)
    assert not torch.equal(ema.model.unet.out[2].weight, raw.model.unet.out[2].weight)


def test_png_metadata_regenerates_the_same_image(ldm_file, tmp_path):
    out = tmp_path / "samples"
    assert main(["sample", str(ldm_file), "--n", "3", "--steps", "3", "--seed", "5", "--batch-size", "3",
                 "--sampler", "euler_a", "--out", str(out), "--device", "cpu"]) == 0
    params = read_params(out / "000006.png")
    assert params["seed"] == 6 and params["sampler"] == "euler_a" and params["batch_seeds"] == [5, 6, 7]
    again = tmp_path / "again"
    assert main(["sample", "--from-png", str(out / "000006.png"), "--out", str(again)]) == 0
    a, b = Image.open(out / "000006.png"), Image.open(again / "000006.png")
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert (out / "grid.png").is_file()


def test_sampling_larger_than_training_and_clear_size_errors(ldm_file):
    pipe = ldmkit.load(ldm_file, device="cpu")
    assert pipe(n=1, steps=2, height=32, width=48)[0].size == (48, 32)
    with pytest.raises(ShapeError, match="height 30 px is not a multiple of 4.*use 28 or 32"):
        pipe(n=1, steps=2, height=30)
    for size in (0, -64):  # never the training size in its place
        with pytest.raises(ShapeError, match=f"width must be a whole number of pixels > 0, got {size}"):
            pipe(n=1, steps=2, width=size)


def test_a_size_whose_activations_cannot_fit_is_refused_before_any_work(ldm_file, monkeypatch):
    pipe = ldmkit.load(ldm_file, device="cpu")
    unet = pipe.config.unet  # the bound: every level's skips, (nrb x its width + the width entering it) x its area
    widths = [unet.model_channels * m for m in unet.channel_mult]
    assert unet.held_values(16, 8) == sum((unet.num_res_blocks * c + widths[max(i - 1, 0)]) * (128 >> 2 * i)
                                          for i, c in enumerate(widths))
    _, h, w = pipe.model.latent_shape(32, 32)
    monkeypatch.setattr("ldmkit.pipeline.generate.available_memory", lambda device: 4 * unet.held_values(h, w))
    assert len(pipe(n=1, steps=1, height=32, width=32, batch_size=1)) == 1  # float32: 4 bytes a value
    calls = []
    monkeypatch.setattr(pipe, "_unet", lambda *a, **k: calls.append(1))
    with pytest.raises(ShapeError, match="32x32 px in batches of 2 needs more than"):
        pipe(n=2, steps=1, height=32, width=32, batch_size=2)
    monkeypatch.undo()
    monkeypatch.setattr(pipe, "_unet", lambda *a, **k: calls.append(1))
    with pytest.raises(ShapeError, match=r"100000x100000 px in batches of 1 needs more than [0-9.]+ GiB .*; ask for a "
                                         r"smaller image"):
        pipe(n=1, steps=2, height=100_000, width=100_000)  # the start noise alone would take 40 GB or more
    assert calls == []


def test_tiled_decoding_matches_whole_decoding_where_the_decoder_is_local():
    def decode(z):  # a pointwise "decoder" with f = 2: tiles must reproduce it exactly
        return torch.nn.functional.interpolate(z[:, :3] * 2, scale_factor=2, mode="nearest")

    z = torch.randn(2, 4, 40, 56)
    tiled = decode_tiled(decode, z, factor=2, tile=16, overlap=4)
    torch.testing.assert_close(tiled, decode(z))


def test_decode_tiles_fit_the_activation_budget_and_waste_little_overlap():
    sd = AutoencoderConfig(kind="kl", ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2)  # SD's VAE, f = 8
    # 256 channels (level 1's, upsampled) x (64 x 8)^2 px x 2 bytes = 128 MiB: 512 px in one pass in bfloat16 ...
    assert first_stage_tile(sd, torch.bfloat16) == 64 and first_stage_tile(sd, torch.float32) == 45
    # ... and in float32 (at most 45) in two tiles of 36 per side, not of 45 that overlap by 26
    assert balanced_tile(64, 45, 8) == 36 and tile_count(64, 64, 36, 8) == 4 and balanced_tile(30, 45, 8) == 30
    seen = []
    decode_tiled(lambda z: seen.append(z.shape[-2:]) or z[:, :3], torch.zeros(1, 4, 64, 64), factor=1, tile=45)
    assert seen == [(36, 36)] * 4


def test_regenerating_from_a_changed_checkpoint_warns(ldm_file, tmp_path, caplog):
    out = tmp_path / "samples"
    assert main(["sample", str(ldm_file), "--n", "1", "--steps", "2", "--out", str(out)]) == 0
    assert not any("has changed" in r.message for r in caplog.records)
    tensors, config, metadata = load_model_file(ldm_file)
    tensors = {k: v + 0.01 if k.startswith("unet.out") else v for k, v in tensors.items()}
    save_model_file(ldm_file, tensors, KIND, config)
    assert main(["sample", "--from-png", str(out / "000000.png"), "--out", str(tmp_path / "again")]) == 0
    assert any("has changed since this image was made" in r.message for r in caplog.records)


def test_eval_checks_the_reference_before_drawing_any_sample(ldm_file, tmp_path, monkeypatch, capsys):
    import ldmkit.evaluation.generation as generation

    def never(*args, **kwargs):
        raise AssertionError("sampling started before the inputs were checked")

    monkeypatch.setattr(generation, "generated_features", never)
    assert main(["eval", str(ldm_file), "--ref", str(tmp_path / "typo"), "--n", "4"]) == 2
    assert "typo" in capsys.readouterr().err


def test_the_decode_tile_is_recorded_checked_and_restored_by_from_png(ldm_file, tmp_path):
    pipe = ldmkit.load(str(ldm_file), device="cpu")
    assert pipe.decode_tile == first_stage_tile(pipe.config.first_stage, torch.float32)  # the budget's, by default
    with pytest.raises(ConfigError, match="above the tiles' overlap of 8, got 8"):
        pipe.set_decode_tile(8)
    whole = pipe(n=1, steps=2, height=48, width=48)[0]  # a 24 x 24 latent: one pass
    pipe.set_decode_tile(12)
    tiled = pipe(n=1, steps=2, height=48, width=48)[0]  # four tiles of 16
    assert read_params(_saved(tiled, tmp_path / "tiled.png"))["decode_tile"] == 12
    assert not np.array_equal(np.asarray(whole), np.asarray(tiled))  # the tiles' seams blend: other pixels
    assert main(["sample", "--from-png", str(tmp_path / "tiled.png"), "--out", str(tmp_path / "again")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / "000000.png")), np.asarray(tiled))


def _saved(image, path):
    from ldmkit.pipeline import save_png

    save_png(image, path)
    return path


def test_eta_is_at_most_1_for_ddim_only(ldm_file):
    pipe = ldmkit.load(ldm_file)
    pipe.check(10, "euler_a", 1.0, 2.0)  # ancestral steps clamp their fresh noise: more than 1 is allowed
    pipe.check(10, "ddim", 1.0, 1.0)
    with pytest.raises(ConfigError, match=r"eta must be a number in \[0, 1\] for ddim, got 1.5"):
        pipe.check(10, "ddim", 1.0, 1.5)
    with pytest.raises(ConfigError, match=r"eta must be a number >= 0, got -1"):
        pipe.check(10, "euler_a", 1.0, -1)

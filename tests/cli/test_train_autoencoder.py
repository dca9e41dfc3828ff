"""`ldmkit train-autoencoder CONFIG --out RUN`, then `--resume RUN`, with the shipped configs shrunk by --set."""

import json

import torch

from ldmkit.autoencoder.checkpoint import load_autoencoder
from ldmkit.checkpoint import latest_checkpoint, load_model_file

# steps 3 and 4 train the PatchGAN too, so a resume must restore the discriminator and its optimiser
GAN_FROM_STEP_3 = ("loss.disc_start=2",)


def losses(row: dict) -> dict:
    """A metrics.jsonl row without its clock readings."""
    return {k: v for k, v in row.items() if k not in ("images_per_second", "train_seconds")}


def test_kl_run_writes_a_checkpoint_and_resume_after_raising_steps_continues_it(tmp_path, tiny, capsys):
    run, full = tmp_path / "run", tmp_path / "full"
    tiny.cli(*tiny.autoencoder(run, 2, *GAN_FROM_STEP_3))
    assert f"checkpoint: {run / 'checkpoints' / 'step-00000002'}" in capsys.readouterr().out
    assert latest_checkpoint(run).name == "step-00000002"
    tensors, config, _ = load_model_file(run, kind="autoencoder")
    assert config["kind"] == "kl" and config["ch_mult"] == [1, 1, 1] and config["embed_dim"] == 3  # the shipped KL-f4
    assert set(json.loads((run / "eval.json").read_text())) >= {"psnr", "ssim"}

    tiny.cli("train-autoencoder", "--resume", run, "--set", "train.steps=4")
    assert latest_checkpoint(run).name == "step-00000004"
    tiny.cli(*tiny.autoencoder(full, 4, *GAN_FROM_STEP_3))  # the same 4 steps without a stop
    resumed, uninterrupted = tiny.rows(run), tiny.rows(full)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert "d_loss" not in resumed[1] and "d_loss" in resumed[2]
    assert [losses(r) for r in resumed] == [losses(r) for r in uninterrupted]
    a, b = load_autoencoder(run).state_dict(), load_autoencoder(full).state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert [k for k in a if not torch.equal(a[k], tensors[k])]  # and it did train on from step 2


def test_vq_config_trains_a_vq_autoencoder(tmp_path, tiny):
    run = tmp_path / "vq"
    tiny.cli(*tiny.autoencoder(run, 2, "model.n_embed=16", "model.embed_dim=3",
                               config=tiny.configs / "autoencoder" / "vq-f4-emoji64.yaml"))
    _, config, _ = load_model_file(run, kind="autoencoder")
    assert (config["kind"], config["n_embed"], config["embed_dim"], config["ch_mult"]) == ("vq", 16, 3, [1, 1, 1])
    assert [r["step"] for r in tiny.rows(run)] == [1, 2]
    usage = json.loads((run / "eval.json").read_text())["codebook_usage"]
    assert 0 < usage <= 1
    model = load_autoencoder(run)
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (1, 3, 8, 8) and model.decode(z).shape == (1, 3, 32, 32)

"""Shared test setup: tiny, CPU-only, deterministic; the OpenMoji render cache is shared.

`make test` runs two pytest workers of one torch thread each: both cores stay busy and small ops
never wait on a second OpenMP thread that another process has taken.
"""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def emoji32():
    """The OpenMoji training split at 32 px (rendered once into the user's ldmkit cache)."""
    from ldmkit.data.openmoji import OpenMojiDataset

    return OpenMojiDataset(32, "train")


# --- Tiny runs of the shipped configs through the CLI (tests/cli, tests/training) ---------------------

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
AE_CONFIG = CONFIGS / "autoencoder" / "kl-f4-emoji64.yaml"
LDM_CONFIG = CONFIGS / "ldm" / "emoji64-kl-f4.yaml"


class TinyRuns:
    """`ldmkit ...` argument lists that shrink a shipped config to a CPU run of a few seconds, and
    readers of what a run leaves behind. The data is 32 px (77 training emoji of one OpenMoji class,
    or the emoji scenes) and every cache lands in `cache`, a private folder that links the shared
    32 px OpenMoji renders, so nothing is rendered again and no latent cache outlives the test."""

    configs = CONFIGS

    def __init__(self, cache: Path):
        self.cache = cache

    @staticmethod
    def cli(*argv) -> None:
        """Run `ldmkit ARGV...` in this process; it must succeed."""
        from ldmkit.cli import main

        argv = [str(a) for a in argv]
        assert main(argv) == 0, f"ldmkit {' '.join(argv)} failed"

    def data(self, dataset: str = "openmoji") -> list[str]:
        sets = ["data.resolution=32", f"data.cache_dir={self.cache}"]
        return sets + (["data.classes=[activities]"] if dataset == "openmoji" else [])

    def autoencoder(self, out: Path, steps: int, *more: str, config: Path = AE_CONFIG) -> list[str]:
        """A 3-level (f = 4) autoencoder 32 channels wide, batch 2, no perceptual or GAN loss unless `more` asks."""
        sets = ["model.ch=32", "model.ch_mult=[1,1,1]", "model.num_res_blocks=1", *self.data(),
                "loss.perceptual_weight=0", "loss.disc_start=1000", "loss.disc_ch=16", "loss.disc_layers=2",
                f"train.steps={steps}", "train.batch_size=2", "train.warmup_steps=10", "train.log_every=1",
                "train.image_every=1000", "train.ckpt_every=1000", "eval_batches=1", *more]
        return ["train-autoencoder", config, "--out", str(out), *_sets(sets)]

    def ldm_sets(self, config: Path, first_stage: Path | str, steps: int, *more: str) -> list[str]:
        """A 2-level UNet 32 channels wide on 8x8 latents, batch 4; context encoders 32 wide, one layer.
        The UNet's channels follow `first_stage`'s latent (the shipped configs' own first stages agree
        with them: test_default_path.py)."""
        from ldmkit.checkpoint import load_model_file
        from ldmkit.conditioning.config import ConditioningConfig
        from ldmkit.config import from_dict

        raw = yaml.safe_load(Path(config).read_text())
        sets = [f"first_stage={first_stage}", *self.data(raw["data"]["dataset"]), "unet.model_channels=32",
                "unet.channel_mult=[1,2]", "unet.num_res_blocks=1", "unet.attention_resolutions=[2]",
                "unet.sample_size=8", f"train.steps={steps}", "train.batch_size=4", "train.warmup_steps=2",
                "train.log_every=1", "train.image_every=1000", "train.ckpt_every=1000", "sample_steps=1",
                "sample_n=2"]
        if str(first_stage) != "identity":
            latent = load_model_file(Path(first_stage), kind="autoencoder")[1]["embed_dim"]
            concat = from_dict(ConditioningConfig, raw.get("conditioning", {})).concat_channels(latent)
            sets += [f"unet.in_channels={latent + concat}", f"unet.out_channels={latent}"]
        if raw["unet"].get("context_dim"):  # class, text, layout: cross-attention to 32-wide tokens
            kind = raw["conditioning"]["kind"]
            section = "class_label" if kind == "class" else kind
            sets += ["unet.context_dim=32", f"conditioning.{section}.embed_dim=32"]
            if "layers" in raw["conditioning"][section]:
                sets.append(f"conditioning.{section}.layers=1")
        return [*sets, *more]

    def ldm(self, out: Path, steps: int, first_stage: Path | str, *more: str, config: Path = LDM_CONFIG) -> list[str]:
        return ["train", config, "--out", str(out), *_sets(self.ldm_sets(config, first_stage, steps, *more))]

    def latent_cache(self) -> Path:
        """The one latent cache built in `cache` (its folder)."""
        (index,) = (self.cache / "latents").glob("*/index.json")
        return index.parent

    @staticmethod
    def widen_latent_cache(folder: Path, factor: float) -> None:
        """Multiply every cached posterior (its mean and std) by `factor`, in place."""
        from safetensors import safe_open
        from safetensors.torch import save_file

        for shard in folder.glob("shard-*.safetensors"):
            with safe_open(str(shard), framework="pt") as f:
                tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
            for key in tensors:
                if key.startswith("mean"):
                    tensors[key] = tensors[key] * factor
                elif key.startswith("logvar"):
                    tensors[key] = tensors[key] + 2 * math.log(factor)
            save_file(tensors, str(shard), metadata=metadata)

    @staticmethod
    def rows(run: Path) -> list[dict]:
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    @classmethod
    def losses(cls, run: Path) -> dict[int, float]:
        return {r["step"]: r["loss"] for r in cls.rows(run)}

    @staticmethod
    def weights(run: Path) -> dict[str, torch.Tensor]:
        """Every tensor of the run's latest model file (EMA weights included)."""
        from safetensors.torch import load_file

        from ldmkit.checkpoint import resolve_model_file

        return load_file(str(resolve_model_file(run)))


def _sets(overrides: list[str]) -> list[str]:
    return [arg for value in overrides for arg in ("--set", value)]


def link_renders(folder: Path) -> Path:
    """`folder`, holding links to the shared OpenMoji renders (32 px), as an ldmkit cache folder."""
    from ldmkit import paths

    folder.mkdir(parents=True, exist_ok=True)
    renders = sorted(paths.cache_dir().glob("openmoji-*-32px-*.npy"))
    assert renders, "the emoji32 fixture renders OpenMoji at 32 px first"
    for render in renders:
        (folder / render.name).symlink_to(render)
    return folder


@pytest.fixture
def tiny(tmp_path, emoji32):
    """TinyRuns with a private cache folder under tmp_path (latent caches are built per test)."""
    return TinyRuns(link_renders(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tiny_autoencoder(tmp_path_factory, emoji32):
    """A KL-f4 autoencoder (32 px -> 4x8x8) trained 2 steps by `ldmkit train-autoencoder`: its run folder."""
    root = tmp_path_factory.mktemp("tiny-autoencoder")
    run = root / "run"
    tiny = TinyRuns(link_renders(root / "cache"))
    tiny.cli(*tiny.autoencoder(run, steps=2))
    return run


@pytest.fixture
def cli_error(capsys):
    """cli_error(argv) runs `ldmkit ARGV`, which must end in one line and exit code 2; returns the line."""
    from ldmkit.cli import main

    def run(argv: list) -> str:
        capsys.readouterr()
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        return err

    return run

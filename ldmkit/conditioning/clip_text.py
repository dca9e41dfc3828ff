"""A frozen CLIP text encoder, as Stable Diffusion v1's FrozenCLIPEmbedder uses it.

Needs the optional dependency `transformers` (`pip install 'ldmkit[clip]'`); everything is read
from local folders, nothing is downloaded. `TextConfig.weights_path` is a CLIP model folder
(`config.json` of a CLIPModel or CLIPTextModel, plus its weights if any; e.g. a local copy of
openai/clip-vit-large-patch14, or a diffusers pipeline's text_encoder/), `vocab_path` a tokenizer
folder (default: the same folder). Captions are padded / truncated to max_tokens (77) and encoded
without an attention mask (CLIP's own causal mask only); the context is the last hidden state
(B, 77, width), as in SD v1 and diffusers' StableDiffusionPipeline. The text model always runs in
float32, whatever dtype its weights were saved in.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ldmkit.conditioning.sections import TextConfig
from ldmkit.conditioning.text import TextConditioner
from ldmkit.errors import ConfigError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")


def _transformers():
    try:
        import transformers
    except ImportError as err:
        raise ConfigError("the clip text encoder needs the optional dependency transformers: "
                          "pip install 'ldmkit[clip]' (or pip install transformers)") from err
    return transformers


def check_clip_weights(cfg: TextConfig) -> None:
    """A frozen CLIP text encoder must be pretrained: an error when its folder holds no weights."""
    folder = Path(cfg.weights_path)
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ConfigError(f"conditioning.text.weights_path: {folder} holds no CLIP weights (model.safetensors or "
                          "pytorch_model.bin), and a frozen text encoder must be pretrained; point it at a CLIP model "
                          "folder with its weights, or start from a model that holds them (--init-from)")


def _empty_text_model(model_class, config) -> nn.Module:
    """A CLIP text model with its state-dict tensors allocated but not set; its one buffer outside the state dict,
    the position ids, set as transformers sets it."""
    with torch.device("meta"):
        model = model_class(config)
    model = model.to_empty(device="cpu")
    embeddings = getattr(model, "text_model", model).embeddings
    ids = embeddings.position_ids  # (1, max_position_embeddings)
    with torch.no_grad():
        ids.copy_(torch.arange(ids.shape[-1]).expand_as(ids))
    return model


class ClipTokenizer:
    """`tokenizer(texts) -> (ids, mask)`, (B, max_tokens) each, with a local CLIPTokenizer."""

    def __init__(self, folder: Path, max_tokens: int):
        transformers = _transformers()
        try:
            self._tokenizer = transformers.CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as err:
            raise ConfigError(f"conditioning.text.vocab_path: no CLIP tokenizer (vocab.json + merges.txt, or "
                              f"tokenizer.json) in {folder}: {err}") from err
        self.max_tokens = max_tokens

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._tokenizer(list(texts), truncation=True, max_length=self.max_tokens, padding="max_length",
                              return_tensors="pt")
        return out["input_ids"].long(), out["attention_mask"].bool()


class TextModelHolder(nn.Module):
    """Keeps SD's tensor names `transformer.text_model.*` whichever transformers version built the model."""

    def __init__(self, text_model: nn.Module):
        super().__init__()
        self.text_model = text_model


class ClipText(TextConditioner):
    """`read_weights`: read the folder's weights (an error if it holds none); False: leave them unset for a loader
    that fills every tensor (a model file, or the model a fine-tuning run starts from)."""

    def __init__(self, cfg: TextConfig, read_weights: bool = True):
        transformers = _transformers()
        folder = Path(cfg.weights_path)
        super().__init__(ClipTokenizer(Path(cfg.vocab_path or folder), cfg.max_tokens))
        try:
            config = transformers.CLIPTextConfig.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as err:
            raise ConfigError(f"conditioning.text.weights_path: no CLIP config.json in {folder}: {err}") from err
        if read_weights:
            check_clip_weights(cfg)
            model = transformers.CLIPTextModel.from_pretrained(str(folder), config=config, local_files_only=True)
        else:
            model = _empty_text_model(transformers.CLIPTextModel, config)
        model = model.float()  # transformers 5 keeps the saved dtype (e.g. float16)
        # transformers 4 nests the text transformer in `text_model`; 5 does not
        self.transformer = TextModelHolder(getattr(model, "text_model", model).requires_grad_(False).eval())
        if config.hidden_size != cfg.embed_dim:
            raise ConfigError(f"conditioning.text.embed_dim is {cfg.embed_dim}, but the CLIP text model in {folder} "
                              f"has width {config.hidden_size}; set embed_dim (and unet.context_dim) to it")

    def encode_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with self.frozen():
            return self.transformer.text_model(input_ids=ids).last_hidden_state  # (B, N, width)

    def save_text_encoder(self, folder: Path) -> None:
        """The text model as a transformers CLIPTextModel folder (config.json + model.safetensors)."""
        text_model = self.transformer.text_model
        model = _transformers().CLIPTextModel(text_model.config)
        getattr(model, "text_model", model).load_state_dict(text_model.state_dict())
        model.save_pretrained(str(folder))

"""Stable Diffusion's text components in a diffusers pipeline folder <-> ldmkit's "clip" text conditioner.

    text_encoder/   transformers CLIPTextModel: config.json + model.safetensors (or pytorch_model.bin, sharded, fp16)
    tokenizer/      transformers CLIPTokenizer: vocab.json + merges.txt and/or tokenizer.json, tokenizer_config.json

On import the two folders become a TextConfig(encoder="clip") with their absolute paths as
weights_path / vocab_path; embed_dim is the text model's hidden_size (= the UNet's
cross_attention_dim) and max_tokens the tokenizer's model_max_length, or the text model's
max_position_embeddings (77 for SD) when the tokenizer leaves it unset (transformers then writes
~1e30). The weights are read here by name (`load_text_encoder`), so a text encoder that does
not fit is an error, not a silently random layer. Reading the configs needs no `transformers`;
building the conditioner does (the optional extra ldmkit[clip]). On export the text model is saved
by transformers itself (`ClipText.save_text_encoder`) and the tokenizer files are copied, with
model_max_length set to the conditioner's max_tokens.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from torch import nn

from ldmkit.checkpoint import RELATIVE_PATHS
from ldmkit.conditioning import ConditioningConfig
from ldmkit.conditioning.sections import TextConfig
from ldmkit.errors import CheckpointError
from ldmkit.interop.tensor_files import read_json, read_weights, safetensors_owners, weight_files
from ldmkit.state_dicts import Source, load_exact, load_exact_from_files

COMPONENTS = ("text_encoder", "tokenizer")
CLASSES = {"text_encoder": ("CLIPTextModel",), "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast")}
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
UNSET_LENGTH = 10**6  # transformers' "no limit" model_max_length is int(1e30)
CONDITIONER_PREFIX = "transformer.text_model."  # ClipText's names for the text model's tensors
POSITION_IDS = "embeddings.position_ids"  # a constant buffer older transformers saved
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")


def text_conditioning(path: Path, index: dict) -> ConditioningConfig | None:
    """The frozen CLIP text conditioning of the pipeline folder `path` (None when it has no text encoder)."""
    given = [name for name in COMPONENTS if isinstance(index.get(name), list) and index[name][:1] != [None]]
    if not given:
        return None
    if len(given) == 1:
        missing = ({*COMPONENTS} - {*given}).pop()
        raise CheckpointError(f"{path} has a {given[0]} but no {missing}; a Stable Diffusion folder needs both")
    for name in COMPONENTS:
        class_name = index[name][-1]
        if class_name not in CLASSES[name]:
            raise CheckpointError(f"{path}: its {name} is a {class_name}; ldmkit reads {' or '.join(CLASSES[name])} "
                                  "(Stable Diffusion 1 and 2)")
    encoder, tokenizer = (path / name for name in COMPONENTS)
    config = read_json(encoder / "config.json")
    tokenizer_config = tokenizer / "tokenizer_config.json"
    length = read_json(tokenizer_config).get("model_max_length") if tokenizer_config.is_file() else None
    positions = config.get("max_position_embeddings", 77)
    length = positions if length is None or length >= UNSET_LENGTH else int(length)
    if length > positions:
        raise CheckpointError(f"{tokenizer_config}: model_max_length {length} is more than the text encoder's "
                              f"{positions} positions; set it to {positions}")
    text = TextConfig(encoder="clip", embed_dim=config.get("hidden_size", 512), max_tokens=length,
                      weights_path=str(encoder.resolve()), vocab_path=str(tokenizer.resolve()))
    return ConditioningConfig(kind="text", drop_prob=0.0, trainable=False, text=text)


def load_text_encoder(conditioner: nn.Module, folder: Path) -> None:
    """Fill the clip conditioner with the CLIPTextModel weights in `folder` (plain, sharded or the fp16 variant:
    tensor_files.weight_files), by name: safetensors tensor by tensor into the conditioner's own tensors
    (state_dicts.load_exact_from_files), pickles whole."""
    files = weight_files(folder, WEIGHTS)
    if not all(file.suffix == ".safetensors" for file in files):
        load_exact(conditioner, {_conditioner_name(k): v for k, v in read_weights(files).items()
                                 if k.removeprefix("text_model.") != POSITION_IDS}, str(folder))
        return
    owners = safetensors_owners(files)
    sources = {_conditioner_name(k): Source((k,)) for k in owners if k.removeprefix("text_model.") != POSITION_IDS}
    expected = conditioner.state_dict()
    load_exact_from_files(conditioner, owners, sources, str(folder),
                          unexpected=sorted(src.keys[0] for key, src in sources.items() if key not in expected),
                          fix="is it the CLIP text model its config.json describes?")


def _conditioner_name(key: str) -> str:
    return CONDITIONER_PREFIX + key.removeprefix("text_model.")  # transformers 4 nests the text model, 5 does not


def copy_tokenizer(source: Path, out: Path, max_tokens: int) -> None:
    """The CLIP tokenizer files of `source` in `out`, its tokenizer_config.json's model_max_length set to
    `max_tokens` (what diffusers pads prompts to). Copied, not re-saved: vocab.json + merges.txt stay
    readable by transformers 4 and 5 alike."""
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file() and name != "tokenizer_config.json":
            shutil.copyfile(source / name, out / name)
    config = read_json(source / "tokenizer_config.json") if (source / "tokenizer_config.json").is_file() else {}
    config.update(model_max_length=max_tokens)
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def save_text_components(conditioner, text: TextConfig, out: Path) -> None:
    """A clip conditioner as a pipeline's text_encoder/ (CLIPTextModel) and tokenizer/ (CLIPTokenizer)."""
    conditioner.save_text_encoder(out / "text_encoder")
    copy_tokenizer(Path(text.vocab_path or text.weights_path), out / "tokenizer", text.max_tokens)


def make_text_portable(model, out: Path) -> dict[str, str]:
    """For a model with a clip conditioner about to be written to out/model.safetensors: copy its CLIP
    config.json and tokenizer files to out/text_encoder and out/tokenizer (the weights travel in the
    model file), point its config at them relative to `out`, and return the model file's metadata entry
    that says so (checkpoint.RELATIVE_PATHS). The written folder then needs nothing outside it and may
    be moved whole. Other models: nothing changes, {} is returned."""
    cond = model.config.conditioning
    if not cond.uses_clip:
        return {}
    text = cond.text
    (out / "text_encoder").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(text.weights_path) / "config.json", out / "text_encoder" / "config.json")
    copy_tokenizer(Path(text.vocab_path or text.weights_path), out / "tokenizer", text.max_tokens)
    text = dataclasses.replace(text, weights_path="text_encoder", vocab_path="tokenizer")
    model.config = dataclasses.replace(model.config, conditioning=dataclasses.replace(cond, text=text))
    return {RELATIVE_PATHS: json.dumps(["conditioning.text.weights_path", "conditioning.text.vocab_path"])}

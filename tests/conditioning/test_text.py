"""Text conditioning: the WordPiece tokenizer, CompVis' BERT transformer and the frozen MiniLM encoder."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ldmkit.conditioning import ConditioningConfig, build_conditioner
from ldmkit.conditioning.sections import TextConfig
from ldmkit.conditioning.wordpiece import WordPieceTokenizer
from ldmkit.errors import ConfigError, DataError

CPU = torch.device("cpu")
REFERENCE = Path(__file__).parent / "fixtures" / "minilm_reference.safetensors"


def text_model(**kwargs):
    return build_conditioner(ConditioningConfig(kind="text", text=TextConfig(**kwargs)))


def test_wordpiece_frames_pads_and_truncates():
    tokenizer = WordPieceTokenizer(None, 8)
    ids, mask = tokenizer(["", "A RED Apple", "a red apple", "one two three four five six seven eight"])
    assert ids[0].tolist() == [101, 102, 0, 0, 0, 0, 0, 0]
    assert ids[1].tolist() == [101, 1037, 2417, 6207, 102, 0, 0, 0]  # lower-cased
    assert torch.equal(ids[1], ids[2])
    assert ids[3, 0] == 101 and ids[3, -1] == 102 and bool(mask[3].all())  # truncated to exactly 8 ids
    assert mask[1].tolist() == [True] * 5 + [False] * 3


def reference_xtransformer(t, ids):
    """x-transformers' encoder written out: 8 heads of 64, scale 64^-1/2, no mask, pre-LN, erf GELU."""
    x = t.token_emb.weight[ids] + t.pos_emb.emb.weight[: ids.shape[1]]
    for j, (norm, block) in enumerate(t.attn_layers.layers):
        h = F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias)
        if j % 2 == 0:
            q, k, v = (h @ w.T for w in (block.to_q.weight, block.to_k.weight, block.to_v.weight))
            q, k, v = (z.unflatten(-1, (8, 64)).transpose(1, 2) for z in (q, k, v))
            attn = (q @ k.transpose(-1, -2) * 64**-0.5).softmax(-1)
            x = x + block.to_out((attn @ v).transpose(1, 2).flatten(2))
        else:
            first, last = block.net[0][0], block.net[2]
            x = x + last(0.5 * first(h) * (1 + torch.erf(first(h) / 2**0.5)))
    return F.layer_norm(x, x.shape[-1:], t.norm.weight, t.norm.bias)


def test_bert_matches_the_written_out_encoder_and_keeps_compvis_names():
    torch.manual_seed(0)
    model = text_model(encoder="bert", embed_dim=16, layers=2, max_tokens=12)
    context = model(["a red apple", "x"])["context"]
    assert context.shape == (2, 12, 16)
    ids, _ = model.tokenize(["a red apple", "x"])
    torch.testing.assert_close(context, reference_xtransformer(model.transformer, ids), atol=1e-5, rtol=1e-5)
    names = set(model.state_dict())
    assert {"transformer.token_emb.weight", "transformer.pos_emb.emb.weight", "transformer.norm.weight",
            "transformer.attn_layers.layers.0.0.weight", "transformer.attn_layers.layers.0.1.to_q.weight",
            "transformer.attn_layers.layers.0.1.to_out.bias", "transformer.attn_layers.layers.1.1.net.0.0.weight",
            "transformer.attn_layers.layers.1.1.net.2.weight"} <= names
    assert model.state_dict()["transformer.attn_layers.layers.0.1.to_q.weight"].shape == (512, 16)


def test_bert_null_is_the_empty_caption_and_trains():
    torch.manual_seed(0)
    model = text_model(encoder="bert", embed_dim=16, layers=1, max_tokens=8)
    null = model.null(3, CPU)["context"]
    assert null.shape == (3, 8, 16)
    assert torch.equal(null[1], model([""])["context"][0])
    model(["a cat"])["context"].sum().backward()
    assert model.transformer.token_emb.weight.grad is not None


def test_captions_are_a_list_of_str_one_per_sample():
    model = text_model(encoder="bert", embed_dim=16, layers=1, max_tokens=8)
    assert model(["a", "b", "c"])["context"].shape == (3, 8, 16)  # the batch is the number of captions
    with pytest.raises(DataError, match="list of captions"):
        model("a cat")  # one str is not a batch: ldmkit.pipeline.conditions repeats a user's caption
    with pytest.raises(DataError, match="list of captions"):
        model(["a cat", None])


def test_minilm_matches_the_transformers_reference():
    """Golden file: BertModel (transformers, eager attention) last hidden states of two prompts, 8 tokens."""
    reference = load_file(REFERENCE)
    prompts = ["a photo of a cat sitting on a red sofa", "a red apple"]  # truncated, and padded
    model = text_model(encoder="minilm", embed_dim=384, max_tokens=8)
    ids, _ = model.tokenize(prompts)
    assert torch.equal(ids, reference["input_ids"])
    with torch.no_grad():
        context = model(prompts)["context"]
    torch.testing.assert_close(context, reference["hidden"], atol=1e-4, rtol=1e-4)


def test_minilm_is_frozen_and_only_its_projection_trains():
    model = text_model(encoder="minilm", embed_dim=32, max_tokens=8)
    assert not any(p.requires_grad for p in model.transformer.parameters())
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["proj.weight", "proj.bias"]
    context = model(["a red apple"])["context"]
    assert context.shape == (1, 8, 32)
    context.sum().backward()
    assert model.proj.weight.grad is not None


def test_text_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="conditioning.text.encoder"):
        TextConfig(encoder="t5")
    with pytest.raises(ConfigError, match="conditioning.text.weights_path"):
        TextConfig(encoder="clip")
    with pytest.raises(ConfigError, match="conditioning.text.vocab_path"):
        text_model(encoder="bert", vocab_path="/nonexistent/vocab.txt")

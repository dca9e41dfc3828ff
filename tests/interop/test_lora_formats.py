"""LoRA files in the kohya / A1111 and diffusers / PEFT formats, checked against diffusers with peft.

Adapters written by ldmkit are loaded by diffusers the way `pipe.load_lora_weights` loads them
(`StableDiffusionPipeline.lora_state_dict` + `load_lora_into_unet` / `load_lora_into_text_encoder`),
and adapters made by peft inside diffusers are read by ldmkit; both sides must then compute the same
UNet (and CLIP text encoder) outputs to float32 rounding. Skipped without diffusers and peft.
"""

import copy

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from ldmkit.autoencoder import AutoencoderConfig  # noqa: E402
from ldmkit.conditioning import ConditioningConfig  # noqa: E402
from ldmkit.conditioning.sections import ClassConfig, TextConfig  # noqa: E402
from ldmkit.errors import CheckpointError  # noqa: E402
from ldmkit.interop.diffusers_unet import to_diffusers  # noqa: E402
from ldmkit.interop.lora_formats import kohya_tensors  # noqa: E402
from ldmkit.lora import LoRAConfig, apply_adapter, read_adapter, write_adapter  # noqa: E402
from ldmkit.lora.layers import adapter_weights, add_lora  # noqa: E402
from ldmkit.pipeline import LatentDiffusion, LDMConfig  # noqa: E402
from ldmkit.unet import UNET_PRESETS  # noqa: E402

SD = diffusers.StableDiffusionPipeline  # its LoRA class methods are what `pipe.load_lora_weights` runs
ALL = ("attention", "proj", "ff", "conv")
UNET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                "conv2", "time_emb_proj", "conv_shortcut"]


def sd_like(conditioning=None) -> LatentDiffusion:
    """A tiny SD-v1-layout model (cross-attention UNet) with random weights, no zero layers."""
    cond = conditioning or ConditioningConfig(kind="class", class_label=ClassConfig(num_classes=3, embed_dim=32))
    torch.manual_seed(0)
    model = LatentDiffusion(LDMConfig(AutoencoderConfig(kind="identity", in_channels=4), UNET_PRESETS["tiny-crossattn"],
                                      conditioning=cond, image_size=8)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 4, 8, 8, generator=g), torch.tensor([10.0, 700.0]), torch.randn(2, 5, 32, generator=g)


def trained_adapter(model: LatentDiffusion, targets=ALL, rank: int = 3, alpha: float = 6.0):
    """An adapter with random (non-zero) weights on `targets` of `model`."""
    adapted = copy.deepcopy(model)
    add_lora(adapted, LoRAConfig(rank=rank, alpha=alpha, targets=targets))
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0, 0.1)
    return adapter_weights(adapted)


def ldmkit_output(model, adapter):
    merged = copy.deepcopy(model)
    apply_adapter(merged, adapter)
    x, t, context = inputs()
    with torch.no_grad():
        return merged.unet(x, t, context=context)


def diffusers_output(unet):
    x, t, context = inputs()
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=context).sample


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_diffusers_loads_what_ldmkit_writes(tmp_path, fmt):
    model = sd_like()
    adapter = trained_adapter(model)
    file = write_adapter(tmp_path / f"{fmt}.safetensors", adapter, model, fmt)
    unet = to_diffusers(model.unet).eval()
    state_dict, alphas = SD.lora_state_dict(str(file))
    SD.load_lora_into_unet(state_dict, alphas, unet=unet)
    ours = ldmkit_output(model, adapter)
    torch.testing.assert_close(diffusers_output(unet), ours, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, ldmkit_output(model, {}), atol=1e-3)  # the adapter changes the output
    again = read_adapter(file, model)  # and ldmkit reads its own export back
    assert again.keys() == adapter.keys()
    torch.testing.assert_close(ldmkit_output(model, again), ours, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("save", ["save_lora_adapter", "save_lora_weights"])
def test_ldmkit_reads_what_peft_makes(tmp_path, save):
    """peft adapters added to diffusers' UNet (lora_alpha != r, so the scale comes from the file's metadata)."""
    model = sd_like()
    unet = to_diffusers(model.unet).eval()
    torch.manual_seed(3)
    config = peft.LoraConfig(r=4, lora_alpha=2, target_modules=UNET_MODULES, init_lora_weights=False)
    unet.add_adapter(config)
    theirs = diffusers_output(unet)
    if save == "save_lora_adapter":  # unprefixed keys, the LoraConfig as metadata
        unet.save_lora_adapter(str(tmp_path))
    else:  # unet.-prefixed keys, as training scripts write them
        layers = peft.get_peft_model_state_dict(unet)
        SD.save_lora_weights(str(tmp_path), unet_lora_layers=layers, unet_lora_adapter_metadata=config.to_dict())
    adapter = read_adapter(tmp_path, model)  # the folder: its pytorch_lora_weights.safetensors
    assert len(adapter) == 7 * 12 + 8 * 3 + 5  # 7 transformers, 8 ResBlocks (5 with a conv_shortcut)
    assert {w.alpha for w in adapter.values()} == {2.0}
    torch.testing.assert_close(ldmkit_output(model, adapter), theirs, rtol=1e-5, atol=1e-5)


def test_the_older_attention_processor_layout_is_read(tmp_path):
    """diffusers' first LoRA files: `...attn1.processor.to_q_lora.down.weight`, scale 1."""
    from safetensors.torch import save_file

    model = sd_like()
    adapter = trained_adapter(model, targets=("attention",), alpha=3.0)  # alpha = rank: scale 1
    current = write_adapter(tmp_path / "peft.safetensors", adapter, model, "diffusers")
    from safetensors.torch import load_file

    old = {}
    for key, value in load_file(str(current)).items():
        layer, _, part = key.rpartition(".lora_")
        base, proj = layer.rsplit(".", 1) if not layer.endswith("to_out.0") else (layer[:-len(".to_out.0")], "to_out")
        old[f"{base}.processor.{proj}_lora.{'down' if part.startswith('A') else 'up'}.weight"] = value
    save_file(old, str(tmp_path / "old.safetensors"))
    assert any(k.endswith("attn2.processor.to_out_lora.up.weight") for k in old)
    ours = ldmkit_output(model, read_adapter(tmp_path / "old.safetensors", model))
    torch.testing.assert_close(ours, ldmkit_output(model, adapter), rtol=1e-6, atol=1e-6)
    unet = to_diffusers(model.unet).eval()
    state_dict, alphas = SD.lora_state_dict(str(tmp_path / "old.safetensors"))
    SD.load_lora_into_unet(state_dict, alphas, unet=unet)
    torch.testing.assert_close(diffusers_output(unet), ours, rtol=1e-5, atol=1e-5)


def test_a_kohya_file_with_a_clip_text_encoder_part_loads_like_diffusers_loads_it(tmp_path, clip_folder):
    from safetensors.torch import save_file

    model = sd_like(ConditioningConfig(kind="text", text=TextConfig(encoder="clip", embed_dim=32,
                                                                    weights_path=str(clip_folder))))
    unet_adapter = trained_adapter(model, targets=("attention",))
    tensors = kohya_tensors(unet_adapter, model)
    g = torch.Generator().manual_seed(5)
    for layer in range(2):
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1"):
            name = f"lora_te_text_model_encoder_layers_{layer}_{'mlp' if proj == 'fc1' else 'self_attn'}_{proj}"
            width = 64 if proj == "fc1" else 32
            tensors[f"{name}.lora_down.weight"] = torch.randn(2, 32, generator=g) * 0.3
            tensors[f"{name}.lora_up.weight"] = torch.randn(width, 2, generator=g) * 0.3
            tensors[f"{name}.alpha"] = torch.tensor(1.0)
    save_file(tensors, str(tmp_path / "kohya.safetensors"))
    adapter = read_adapter(tmp_path / "kohya.safetensors", model)
    assert "conditioner.transformer.text_model.encoder.layers.1.mlp.fc1" in adapter

    merged = copy.deepcopy(model)
    apply_adapter(merged, adapter)
    text = transformers.CLIPTextModel.from_pretrained(str(clip_folder)).eval()
    getattr(text, "text_model", text).load_state_dict(model.conditioner.transformer.text_model.state_dict())
    state_dict, alphas = SD.lora_state_dict(str(tmp_path / "kohya.safetensors"))
    SD.load_lora_into_text_encoder(state_dict, alphas, text_encoder=text)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(clip_folder))
    ids = tokenizer(["a cat", "cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        theirs = text(input_ids=ids).last_hidden_state
        ours = merged.conditioner(["a cat", "cat"])["context"]
        plain = model.conditioner(["a cat", "cat"])["context"]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, plain, atol=1e-3)
    unet = to_diffusers(model.unet).eval()
    SD.load_lora_into_unet(state_dict, alphas, unet=unet)
    torch.testing.assert_close(diffusers_output(unet), ldmkit_output(model, unet_adapter), rtol=1e-5, atol=1e-5)


def test_adapters_on_the_frozen_clip_encoder_train_and_export_as_kohya_text_encoder_keys(tmp_path, clip_folder):
    model = sd_like(ConditioningConfig(kind="text", text=TextConfig(encoder="clip", embed_dim=32,
                                                                    weights_path=str(clip_folder))))
    names = add_lora(model, LoRAConfig(rank=2, text_encoder=True))
    clip = [n for n in names if n.startswith("conditioner.")]
    assert {n.rsplit(".", 1)[1] for n in clip} == {"q_proj", "k_proj", "v_proj", "out_proj"} and len(clip) == 8
    model.conditioner(["a cat", "cat"])["context"].square().sum().backward()  # with gradients through CLIP
    ups = {n: p for n, p in model.named_parameters() if n.startswith("conditioner.") and n.endswith("lora_B")}
    assert len(ups) == 8 and all(float(p.grad.abs().max()) > 0 for p in ups.values())
    assert all(p.grad is None for n, p in model.conditioner.named_parameters() if "lora" not in n)  # frozen
    with torch.no_grad():
        for p in ups.values():
            p.normal_(0, 0.1)
        model.conditioner(["cat"])  # and without them, as at sampling
    tensors = kohya_tensors(adapter_weights(model), model)
    assert "lora_te_text_model_encoder_layers_1_self_attn_q_proj.lora_up.weight" in tensors
    write_adapter(tmp_path / "te.safetensors", adapter_weights(model), model, "kohya")
    plain = sd_like(ConditioningConfig(kind="text", text=TextConfig(encoder="clip", embed_dim=32,
                                                                    weights_path=str(clip_folder))))
    adapter = read_adapter(tmp_path / "te.safetensors", plain)
    assert sorted(k for k in adapter if k.startswith("conditioner.")) == sorted(clip)


def test_unsupported_or_foreign_adapters_are_refused_by_key(tmp_path):
    from safetensors.torch import save_file

    model = sd_like()
    save_file({"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(2, 32),
               "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.zeros(32, 2),
               "unet.down_blocks.0.attentions.0.proj_in.lora_magnitude_vector": torch.zeros(32)},
              str(tmp_path / "dora.safetensors"))
    with pytest.raises(CheckpointError, match="belongs to a DoRA adapter"):
        read_adapter(tmp_path / "dora.safetensors", model)
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 32)},
              str(tmp_path / "half.safetensors"))
    with pytest.raises(CheckpointError, match="has no matching up tensor"):
        read_adapter(tmp_path / "half.safetensors", model)
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(2, 48),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 2)},
              str(tmp_path / "wide.safetensors"))
    with pytest.raises(CheckpointError, match=r"'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight' adapts "
                                              r"a \(32, 48, 1, 1\)|adapts a \(32, 48\) weight"):
        apply_adapter(model, read_adapter(tmp_path / "wide.safetensors", model), 0.0)

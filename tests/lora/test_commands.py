"""LoRA runs through the CLI: what a run writes, sampling with adapters (`--lora`, `ldmkit.load(lora=...)`),
`merge-lora`, `export-lora`, and the bad inputs around them (one line, exit code 2)."""

import json
import re

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

import ldmkit
from ldmkit.checkpoint import latest_checkpoint, load_model_file, save_model_file
from ldmkit.cli import main

FAST = ["--n", "2", "--steps", "2", "--device", "cpu"]


def pixels(folder) -> np.ndarray:
    return np.stack([np.asarray(Image.open(folder / name)) for name in ("000000.png", "000001.png")])


def sample(tmp_path, name: str, *argv) -> np.ndarray:
    assert main(["sample", *map(str, argv), *FAST, "--out", str(tmp_path / name)]) == 0
    return pixels(tmp_path / name)



def test_a_lora_run_trains_and_stores_the_adapters_alone(lora_runs):
    run, base = lora_runs["lora"], lora_runs["base"]
    tensors, config, metadata = load_model_file(run, kind="lora")
    assert config["lora"]["rank"] == 2 and config["base"]["model"] == str(base)
    assert all(re.fullmatch(r"unet\..*\.(qkv|proj_out)\.(lora_A\.weight|lora_B\.weight|alpha)", k) for k in tensors)
    assert any(float(v.abs().max()) > 0 for k, v in tensors.items() if k.endswith("lora_B.weight"))  # it trained
    assert json.loads(metadata["ldmkit.run_config"])["lora"]["rank"] == 2
    ckpt, base_ckpt = latest_checkpoint(run), latest_checkpoint(base)
    for name in ("model.safetensors", "state.pt"):  # adapters, their EMA and optimiser state only
        assert (ckpt / name).stat().st_size * 20 < (base_ckpt / name).stat().st_size
    state = torch.load(ckpt / "state.pt", weights_only=True)
    assert set(state["trained"]) == set(state["ema"]["shadow"]) and all("lora_" in k for k in state["trained"])


def test_weight_zero_is_the_base_model_bit_for_bit_and_merge_lora_equals_sampling_with_the_adapters(tmp_path,
                                                                                                    lora_runs):
    base, lora, conv = lora_runs["base"], lora_runs["lora"], lora_runs["conv"]
    plain = sample(tmp_path, "plain", base)
    assert np.array_equal(sample(tmp_path, "zero", base, "--lora", f"{lora}:0"), plain)
    adapted = sample(tmp_path, "adapted", base, "--lora", lora)
    assert not np.array_equal(adapted, plain)
    assert main(["merge-lora", str(base), str(lora), "--out", str(tmp_path / "merged")]) == 0
    assert np.array_equal(sample(tmp_path, "merged-sample", tmp_path / "merged"), adapted)

    both = sample(tmp_path, "both", base, "--lora", f"{lora}:0.5", "--lora", f"{conv}:1.5")
    assert main(["merge-lora", str(base), f"{lora}:0.5", f"{conv}:1.5", "--out", str(tmp_path / "merged2")]) == 0
    assert np.array_equal(sample(tmp_path, "merged2-sample", tmp_path / "merged2"), both)
    _, _, metadata = load_model_file(tmp_path / "merged2")
    assert json.loads(metadata["ldmkit.merged_from"])["lora"][1] == {"path": str(conv), "weight": 1.5}
    assert json.loads(metadata["ldmkit.run_config"])["lora"]["rank"] == 2  # (eval finds the data the run used)

    pipe = ldmkit.load(base, device="cpu", lora=[(lora, 0.5), (conv, 1.5)], dtype="auto")  # the Python API, as the CLI
    images = pipe(n=2, steps=2, seed=0)
    assert np.array_equal(np.stack([np.asarray(im) for im in images]), both)

    assert main(["sample", "--from-png", str(tmp_path / "both" / "000001.png"), "--out", str(tmp_path / "again")]) \
        == 0  # the PNG records its adapters
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / "000001.png")), both[1])


def test_export_lora_of_a_legacy_attention_unet_says_which_format_to_use(tmp_path, lora_runs, capsys, cli_error):
    base, lora = lora_runs["base"], lora_runs["lora"]
    err = cli_error(["export-lora", base, lora, "--format", "kohya", "--out", tmp_path / "k.safetensors"])
    assert "has no kohya name" in err and "write the ldmkit format instead" in err
    assert main(["export-lora", str(base), str(lora), "--format", "ldmkit", "--out", str(tmp_path / "a.safetensors")]) \
        == 0
    assert load_file(str(tmp_path / "a.safetensors")).keys() == load_model_file(lora)[0].keys()
    assert not (tmp_path / "k.safetensors").exists()


def test_bad_lora_inputs_are_one_line(tmp_path, lora_runs, capsys, cli_error):
    base, lora = lora_runs["base"], lora_runs["lora"]
    out = ["--out", tmp_path / "out"]
    tensors, config, _ = load_model_file(lora, kind="lora")
    (key,) = [k for k in sorted(tensors) if k.endswith("middle_block.1.qkv.lora_A.weight")]
    wider = dict(tensors, **{key: torch.zeros(2, 128, 1)})  # made for a wider model
    save_model_file(tmp_path / "wide.safetensors", wider, "lora", config)
    assert re.search(r"'unet.middle_block.1.qkv.lora_A.weight' adapts a \(192, 128, 1\) weight, but this model's "
                     r"unet.middle_block.1.qkv is \(192, 64, 1\): the adapter was made for another architecture",
                     cli_error(["sample", base, "--lora", tmp_path / "wide.safetensors", *FAST, *out]))
    from safetensors.torch import save_file

    save_file({"lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight": torch.zeros(1, 4),
               "lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight": torch.zeros(4, 1)},
              str(tmp_path / "kohya.safetensors"))
    err = cli_error(["sample", base, "--lora", tmp_path / "kohya.safetensors", *FAST, *out])
    assert "key 'lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight' names no layer of this model " \
           "(the first that does not match)" in err
    err = cli_error(["sample", base, "--lora", tmp_path / "nope", *FAST, *out])
    assert "LoRA " + str(tmp_path / "nope") + " does not exist" in err
    torch.save({}, tmp_path / "pickled.ckpt")
    assert "as .safetensors only" in cli_error(["sample", base, "--lora", tmp_path / "pickled.ckpt", *FAST, *out])
    assert "holds an ldmkit 'ldm' model, not a LoRA adapter" in cli_error(["sample", base, "--lora", base, *FAST, *out])
    assert f"is a LoRA adapter, not a model; apply it to its base model (ldmkit sample {base} --lora {lora}" in \
        cli_error(["sample", lora, *FAST, *out])
    assert "the weight must be a finite number" in cli_error(["sample", base, "--lora", f"{lora}:nan", *FAST, *out])
    err = cli_error(["merge-lora", base, lora, "--out", latest_checkpoint(base)])
    assert "merge-lora never overwrites a model" in err
    err = cli_error(["train", "--init-from", lora, "--out", tmp_path / "ft"])
    assert "is a LoRA adapter, not a model" in err and "ldmkit merge-lora" in err
    assert not (tmp_path / "ft").exists()


def test_a_lora_on_the_text_encoder_adapts_its_attention(tmp_path, tiny, tiny_autoencoder):
    text = tiny.configs / "ldm" / "text-emoji64.yaml"  # BERT WordPiece + a transformer trained with the UNet
    base, run = tmp_path / "base", tmp_path / "lora"
    tiny.cli(*tiny.ldm(base, 3, tiny_autoencoder, config=text))  # (from step 3 on, gradients reach the context)
    tiny.cli(*tiny.ldm(run, 2, tiny_autoencoder, "lora.rank=2", "lora.text_encoder=true", "train.lr=0.05",
                       config=text), "--init-from", base)
    tensors = load_model_file(run, kind="lora")[0]
    ups = {k: v for k, v in tensors.items() if k.startswith("conditioner.") and k.endswith("lora_B.weight")}
    assert {k.split(".")[-3] for k in ups} == {"to_q", "to_k", "to_v", "to_out"}  # its attention projections
    assert all(float(v.abs().max()) > 0 for v in ups.values())
    plain, adapted = ldmkit.load(base, device="cpu"), ldmkit.load(base, device="cpu", lora=[run])
    cond = plain.model.conditioner(["red apple"])["context"]
    assert not torch.equal(adapted.model.conditioner(["red apple"])["context"], cond)


def test_eval_upscale_and_inpaint_take_adapters_too(tmp_path, lora_runs, monkeypatch):
    from tests.cli.conftest import KINDS, write_model_file

    monkeypatch.setenv("LDMKIT_CACHE", str(tmp_path / "cache"))
    base, lora = lora_runs["base"], lora_runs["lora"]
    rng = np.random.default_rng(0)
    (tmp_path / "ref").mkdir()
    for i in range(8):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "ref" / f"{i}.png")
    args = ["--ref", str(tmp_path / "ref"), "--n", "4", "--steps", "2", "--batch-size", "4", "--kid-subsets", "2",
            "--device", "cpu"]
    assert main(["eval", str(base), *args, "--out", str(tmp_path / "plain")]) == 0
    assert main(["eval", str(base), *args, "--lora", f"{lora}:0.5", "--out", str(tmp_path / "adapted")]) == 0
    plain, adapted = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("plain", "adapted"))
    assert adapted["settings"]["lora"] == [f"{lora}:0.5"] and plain["settings"]["lora"] == []
    assert adapted["FD-EffNet"] != plain["FD-EffNet"]  # other samples
    # the tiny super-resolution and inpainting models share the base's attention layers, so its adapter fits them
    Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "image.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "mask.png")
    for kind, command in (("low_res", ["upscale", str(tmp_path / "image.png")]),
                          ("inpaint", ["inpaint", str(tmp_path / "image.png"), str(tmp_path / "mask.png")])):
        model = write_model_file(tmp_path / f"{kind}.safetensors", *KINDS[kind][:1], **KINDS[kind][1])
        outputs = {}
        for name, extra in (("plain", []), ("adapted", ["--lora", str(lora)])):
            outputs[name] = tmp_path / f"{kind}-{name}.png"
            assert main([*command, "--model", model, *extra, "--steps", "2", "--device", "cpu",
                         "--out", str(outputs[name])]) == 0
        assert not np.array_equal(*(np.asarray(Image.open(path)) for path in outputs.values()))
        recorded = json.loads(Image.open(outputs["adapted"]).info["ldmkit"])["lora"]
        assert recorded[0]["file"].startswith(str(lora)) and recorded[0]["weight"] == 1.0

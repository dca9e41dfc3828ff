"""Every bad input a user can give the CLI ends in one line `ldmkit CMD: error: ...` and exit code 2.

Each row runs `ldmkit` as a user would (in-process through `ldmkit.cli.main`) and asserts the exit
code, a message that names the problem, a single line on stderr, and no traceback. Rows name the
model they run on (tiny untrained files of every kind, tests/cli/conftest.py) and the files they
need ({tmp}: a fresh folder with a few prepared files).
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldmkit.cli import COMMANDS, main

from .conftest import KINDS, write_model_file

LDM_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ldm" / "emoji64-kl-f4.yaml"
AE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "autoencoder" / "kl-f4-emoji64.yaml"
ROWS = [
    # (id, argv with {model}/{tmp} placeholders, model kind, expected message (regex))
    ("prompt-on-unconditional", "sample {model} --prompt 'red apple'", "none",
     r"--prompt is for text models, but this is an unconditional model: it takes no condition"),
    ("class-on-unconditional", "sample {model} --class 3", "none", r"--class is for class models.*unconditional"),
    ("guidance-on-unconditional", "sample {model} --guidance 5", "none",
     r"guidance needs a conditional model.*unconditional.*drop the guidance"),
    ("guidance-nan", "sample {model} --class 1 --guidance nan", "class", r"guidance must be a finite number >= 0"),
    ("guidance-negative", "sample {model} --class 1 --guidance -2", "class", r"guidance must be a finite number"),
    ("prompt-on-class-model", "sample {model} --prompt apple", "class",
     r"--prompt is for text models, but this is a 'class' model: it takes a class index or name"),
    ("label-map-on-text-model", "sample {model} --label-map {tmp}/map.png", "text", r"--label-map is for semantic"),
    ("class-out-of-range", "sample {model} --class 7", "class", r"class 7 does not exist; classes: 0: apple"),
    ("class-unknown-name", "sample {model} --class durian", "class", r"class 'durian' is unknown; classes:"),
    ("device-gpu", "sample {model} --device gpu", "none", r"device 'gpu' is unknown; use auto, cpu, cuda"),
    ("device-cuda-missing", "sample {model} --device cuda", "none", r"no CUDA device.*--device cpu"),
    ("from-png-missing", "sample --from-png {tmp}/nope.png", None, r"nope.png does not exist"),
    ("from-png-without-parameters", "sample --from-png {tmp}/plain.png", None,
     r"carries no ldmkit generation parameters"),
    ("from-png-with-other-settings", "sample --from-png {tmp}/plain.png --steps 9", None,
     r"--from-png takes every setting from the PNG; drop --steps"),
    ("out-not-writable", "sample {model} --out {tmp}/a-file/sub", "none", r"cannot create the output folder"),
    ("out-is-a-file", "sample {model} --out {tmp}/a-file", "none", r"--out .*a-file is a file, not a folder"),
    ("steps-zero", "sample {model} --steps 0", "none", r"steps must be a whole number >= 1"),
    ("steps-past-the-schedule", "sample {model} --steps 1001", "none",
     r"steps must be at most the model's 1000 training timesteps, got 1001"),
    ("sampler-unknown", "sample {model} --sampler lms", "none", r"sampler 'lms' is unknown; choose one of"),
    ("eta-for-ddpm", "sample {model} --sampler ddpm --eta 0.5", "none", r"sampler 'ddpm' has no eta \(only ddim"),
    ("eta-negative", "sample {model} --eta -1", "none", r"eta must be a number >= 0, got -1.0"),
    ("eta-above-1", "sample {model} --sampler ddim --eta 5", "none",
     r"eta must be a number in \[0, 1\] for ddim, got 5.0; use 0 \(deterministic\) to 1"),
    ("eta-nan", "sample {model} --sampler ddim --eta nan", "none",
     r"eta must be a number in \[0, 1\] for ddim, got nan"),
    ("height-not-multiple", "sample {model} --height 31", "none", r"height 31 px is not a multiple of 2"),
    ("n-zero", "sample {model} --n 0", "none", r"n must be a whole number >= 1"),
    ("width-zero", "sample {model} --width 0", "none", r"width must be a whole number of pixels > 0, got 0"),
    ("size-beyond-memory", "sample {model} --width 100000 --height 100000", "none",
     r"100000x100000 px in batches of 8 needs more than [0-9.]+ GiB .* free; ask for a smaller image or batch"),
    ("option-of-another-command", "eval {model} --prompt x", "none", r"unrecognized arguments: --prompt x; see "
     r"ldmkit eval --help"),
    ("lora-weight-not-a-number", "sample {model} --lora {tmp}/image.png:abc", "none",
     r"--lora '.*image.png:abc': the weight 'abc' is not a number; give e.g. .*image.png:0.8"),
    ("inpaint-with-a-regular-model", "inpaint {tmp}/image.png {tmp}/mask.png --model {model} --out {tmp}/o.png", "none",
     r"this is an unconditional model; inpainting needs an inpainting model .* ldmkit sample MODEL --init-image"),
    ("convert-an-image", "convert {tmp}/plain.png --out {tmp}/converted", None,
     r"plain.png is not a model convert can read; convert reads an original CompVis checkpoint"),
    ("no-checkpoint", "sample", None, r"give a CHECKPOINT"),
    ("checkpoint-missing", "sample {tmp}/nothing-here", None, r"nothing-here does not exist"),
    ("checkpoint-corrupt", "sample {tmp}/corrupt.safetensors", None, r"not a readable safetensors file"),
    ("checkpoint-of-an-autoencoder", "sample {tmp}/autoencoder.safetensors", None,
     r"holds a 'autoencoder' model, but a 'ldm' model is needed"),
    ("label-map-missing", "sample {model} --label-map {tmp}/nope.png", "semantic",
     r"label map .*nope.png does not exist"),
    ("layout-malformed", "sample {model} --layout {tmp}/bad.json", "layout", r"bad.json"),
    ("two-conditions", "sample {model} --class 1 --prompt x", "class", r"give one kind of condition"),
    ("unknown-command", "samples x", None, r"invalid choice: 'samples'"),
    ("not-a-number", "sample {model} --steps abc", "none", r"argument --steps: invalid int value: 'abc'"),
    ("init-image-missing", "sample {model} --init-image {tmp}/nope.png", "none", r"image .*nope.png does not exist"),
    ("init-image-corrupt", "sample {model} --init-image {tmp}/corrupt.png", "none", r"cannot read image .*corrupt.png"),
    ("strength-above-1", "sample {model} --init-image {tmp}/image.png --strength 2", "none",
     r"strength must be in \[0, 1\]"),
    ("strength-without-init-image", "sample {model} --strength 0.5", "none", r"strength needs an init image"),
    ("mask-without-init-image", "sample {model} --mask {tmp}/mask.png", "none", r"a mask needs an init image"),
    ("mask-of-another-size", "sample {model} --init-image {tmp}/image.png --mask {tmp}/small.png", "none",
     r"the mask is 8x8 px but the init image 16x16"),
    ("mask-with-an-inpainting-model", "sample {model} --init-image {tmp}/image.png --mask {tmp}/mask.png", "inpaint",
     r"this is an inpainting model: give the image and the mask as its condition"),
    ("negative-prompt-on-class-model", "sample {model} --class 1 --negative-prompt x --guidance 3", "class",
     r"--negative-prompt is for text models, but this is a 'class' model"),
    ("negative-class-without-guidance", "sample {model} --class 1 --negative-class 2", "class",
     r"acts through classifier-free guidance; set guidance above 1"),
    ("negative-class-unknown", "sample {model} --class 1 --negative-class durian --guidance 3", "class",
     r"class 'durian' is unknown"),
    ("karras-with-ddim", "sample {model} --sampler ddim --karras", "none",
     r"Karras noise levels are for the sigma-space samplers"),
    ("cache-interval-zero", "sample {model} --cache-interval 0", "none", r"feature-cache interval must be a whole"),
    ("guidance-interval-without-guidance", "sample {model} --class 1 --guidance-interval 0.1 5", "class",
     r"a guidance interval limits classifier-free guidance; set guidance above 1"),
    ("text-encoder-for-an-ldmkit-model", "sample {model} --text-encoder {tmp}", "none",
     r"is an ldmkit model, which carries its own config and encoders; --text-encoder is for CompVis"),
    ("seed-out-of-range", "sample {model} --seed 123456789012345678901", "none", r"seed must be a whole number in"),
    ("class-as-a-unicode-digit", "sample {model} --class ²", "class", r"class '²' is unknown"),
    ("upscale-corrupt-image", "upscale {tmp}/corrupt.png --model {model} --out {tmp}/up", "low_res",
     r"cannot read image .*corrupt.png"),
    ("upscale-missing-image", "upscale {tmp}/nope.png --model {model} --out {tmp}/up", "low_res",
     r"image .*nope.png does not exist"),
    ("upscale-with-a-class-model", "upscale {tmp}/small.png --model {model} --out {tmp}/up", "class",
     r"this is a 'class' model; upscaling needs a super-resolution model"),
    ("upscale-tile-zero", "upscale {tmp}/small.png --model {model} --out {tmp}/up --tile 0", "low_res",
     r"--tile must be >= 1"),
    ("upscale-overlap-as-large-as-the-tile", "upscale {tmp}/small.png --model {model} --out {tmp}/up --tile 8 "
     "--overlap 8", "low_res", r"--overlap in 0 .. tile - 1 \(less than the tile\), got 8 and 8"),
    ("upscale-overlap-negative", "upscale {tmp}/small.png --model {model} --out {tmp}/up --overlap -1", "low_res",
     r"--overlap in 0 .. tile - 1"),
    ("upscale-out-jpg", "upscale {tmp}/small.png --model {model} --out {tmp}/x.jpg", "low_res",
     r"--out .*x.jpg names a .jpg file, but the output is a PNG .*; give a .png file, e.g. .*x.png, or a folder"),
    ("inpaint-out-jpg", "inpaint {tmp}/image.png {tmp}/mask.png --model {model} --out {tmp}/y.jpeg", "inpaint",
     r"--out .*y.jpeg names a .jpeg file, but the output is a PNG"),
    ("sample-out-png", "sample {model} --out {tmp}/z.png", "none",
     r"--out .*z.png names an image file, but this command writes a folder .*; give a folder, e.g. .*/z$"),
    ("inpaint-empty-mask", "inpaint {tmp}/image.png {tmp}/black.png --model {model} --out {tmp}/o.png", "inpaint",
     r"the mask .*black.png is empty \(all black\): nothing to inpaint; white .* marks the part to fill"),
    ("init-image-a-folder", "sample {model} --init-image {tmp}/adir.png", "none",
     r"image .*adir.png is a folder, not an image file; give the path of an image file"),
    ("init-image-1x1", "sample {model} --init-image {tmp}/one.png", "none",
     r"is 1x1 px, which sets the image size: height 1 px is not a multiple of 2 .*; use 2 or another multiple of 2"),
    ("tiny-decoder-an-image", "sample {model} --tiny-decoder {tmp}/plain.png", "none",
     r"tiny decoder .*plain.png is not a weights file \(.safetensors, .*\); give a diffusers AutoencoderTiny folder"),
    ("lora-missing", "sample {model} --lora {tmp}/nope.safetensors", "none",
     r"LoRA .*nope.safetensors does not exist; check the path \(an ldmkit LoRA run"),
    ("inpaint-mask-of-another-size", "inpaint {tmp}/image.png {tmp}/small.png --model {model} --out {tmp}/o",
     "inpaint", r"the mask .*small.png is 8x8 px but the image 16x16; give a mask of the image's size"),
    ("inpaint-with-an-unconditional-model", "inpaint {tmp}/image.png {tmp}/mask.png --model {model} --out {tmp}/o",
     "none", r"inpainting needs an inpainting model"),
    ("inpaint-guidance-nan", "inpaint {tmp}/image.png {tmp}/mask.png --model {model} --out {tmp}/o --guidance nan",
     "inpaint", r"guidance must be a finite number"),
    ("eval-reference-missing", "eval {model} --ref {tmp}/typo --n 2 --out {tmp}/ev", "none",
     r"typo"),
    ("eval-guidance-on-unconditional", "eval {model} --ref {tmp}/refs --n 2 --guidance 3 --out {tmp}/ev", "none",
     r"guidance needs a conditional model"),
    ("eval-condition-from-data-unconditional", "eval {model} --ref {tmp}/refs --n 2 --condition-from-data "
     "--out {tmp}/ev", "none", r"--condition-from-data gives each sample a condition, but this model is unconditional"),
    ("eval-inception-weights-with-effnet", "eval {model} --ref {tmp}/refs --n 2 --inception-weights {tmp}/nope.pth "
     "--out {tmp}/ev", "none", r"--inception-weights is for --features inception, but the features are effnet; add "
     r"--features inception \(FID\) or drop --inception-weights"),
    ("eval-ref-junk-npz", "eval {model} --ref {tmp}/junk.npz --n 2 --out {tmp}/ev", "none",
     r"reference statistics .*junk.npz are not a NumPy .npz archive; give a .npz of statistics written by "
     r"`ldmkit eval`"),
    ("eval-condition-from-data-unknown-class-folders", "eval {model} --ref {tmp}/refs-named --n 2 "
     "--condition-from-data --out {tmp}/ev", "class", r"refs-named has classes this model does not know \('durian'\); "
     r"name its class sub-folders after the model's classes \(apple, banana, cherry\)"),
    ("eval-condition-from-data-flat-folder", "eval {model} --ref {tmp}/refs --n 2 --condition-from-data "
     "--out {tmp}/ev", "class", r"refs has no class sub-folders, so every sample would get one class; sort its "
     r"images into one sub-folder per class \(named as the model's classes: apple, banana, cherry\)"),
    ("eval-condition-from-data-images-at-the-top", "eval {model} --ref {tmp}/refs-mixed --n 2 --condition-from-data "
     "--out {tmp}/ev", "class", r"refs-mixed has images at its top level, outside any class sub-folder"),
    ("eval-condition-from-data-more-classes-than-an-unnamed-model", "eval {tmp}/class-unnamed.safetensors --ref "
     "{tmp}/refs-abcde --n 2 --condition-from-data --out {tmp}/ev", None,
     r"refs-abcde has 5 classes \(a, b, c, d, e\), but the model has 3 and no class names to match them by; give a "
     r"dataset with 3 class sub-folders"),
    ("eval-condition-from-data-fewer-classes-than-an-unnamed-model", "eval {tmp}/class-unnamed.safetensors --ref "
     "{tmp}/refs-ab --n 2 --condition-from-data --out {tmp}/ev", None, r"refs-ab has 2 classes \(a, b\), but the "
     r"model has 3"),
    ("eval-autoencoder-batch-size-zero", "eval-autoencoder {tmp}/autoencoder.safetensors --batch-size 0 "
     "--out {tmp}/ea", None, r"--batch-size must be a whole number >= 1, got 0"),
    ("eval-autoencoder-resolution-negative", "eval-autoencoder {tmp}/autoencoder.safetensors --resolution -8 "
     "--out {tmp}/ea", None, r"--resolution must be a whole number of pixels >= 8, got -8"),
    ("eval-autoencoder-resolution-zero", "eval-autoencoder {tmp}/autoencoder.safetensors --resolution 0 "
     "--out {tmp}/ea", None, r"--resolution must be a whole number of pixels >= 8, got 0"),
    ("eval-autoencoder-max-images-zero", "eval-autoencoder {tmp}/autoencoder.safetensors --max-images 0 "
     "--out {tmp}/ea", None, r"--max-images must be a whole number >= 1, got 0; drop it to evaluate every image"),
    ("eval-autoencoder-max-images-negative", "eval-autoencoder {tmp}/autoencoder.safetensors --max-images -1 "
     "--out {tmp}/ea", None, r"--max-images must be a whole number >= 1, got -1"),
    ("eval-autoencoder-out-png", "eval-autoencoder {tmp}/autoencoder.safetensors --out {tmp}/ea.png", None,
     r"--out .*ea.png names an image file, but this command writes a folder"),
    ("cache-latents-batch-size-zero", "cache-latents configs/ldm/emoji64-kl-f4.yaml --batch-size 0", None,
     r"--batch-size must be a whole number >= 1, got 0"),
    ("cache-latents-out", "cache-latents configs/ldm/emoji64-kl-f4.yaml --out {tmp}/cache", None,
     r"unrecognized arguments: --out .*/cache; see ldmkit cache-latents --help"),
    ("train-config-missing", "train {tmp}/nope.yaml", None, r"config file .*nope.yaml does not exist"),
    ("train-unknown-key", "train configs/ldm/emoji64-kl-f4.yaml --set train.stpes=5 --out {tmp}/run", None,
     r"unknown config key 'train.stpes' \(did you mean 'train.steps'\?\)"),
    ("train-bad-value", "train configs/ldm/emoji64-kl-f4.yaml --set train.batch_size=0 --out {tmp}/run", None,
     r"train.batch_size must be at least 1"),
    ("train-resume-nothing", "train --resume {tmp}/empty-run", None,
     r"config.yaml does not exist|no complete checkpoint"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from ldmkit.autoencoder import AutoencoderConfig
    from ldmkit.autoencoder.checkpoint import autoencoder_state
    from ldmkit.autoencoder.model import build_autoencoder
    from ldmkit.checkpoint import save_model_file

    tmp = tmp_path_factory.mktemp("bad-inputs")
    (tmp / "a-file").write_text("not a folder")
    (tmp / "corrupt.safetensors").write_bytes(b"\x00" * 64)
    (tmp / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp / "plain.png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp / "image.png")
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp / "small.png")
    Image.fromarray(np.where(np.arange(16)[:, None] < 8, 255, 0).astype(np.uint8).repeat(16, 1)).save(tmp / "mask.png")
    Image.fromarray(np.zeros((16, 16), np.uint8), "L").save(tmp / "map.png")
    (tmp / "refs").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp / "refs" / f"{i}.png")
    (tmp / "bad.json").write_text(json.dumps({"images": []}))
    (tmp / "adir.png").mkdir()
    (tmp / "junk.npz").write_text("junk\n")
    Image.new("RGB", (1, 1)).save(tmp / "one.png")
    Image.new("L", (16, 16), 0).save(tmp / "black.png")
    for name, classes in (("refs-named", ("apple", "banana", "cherry", "durian")), ("refs-abcde", "abcde"),
                          ("refs-ab", "ab"), ("refs-mixed", ("apple", "banana"))):
        for label in classes:
            (tmp / name / label).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp / name / label / f"{i}.png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp / "refs-mixed" / "top.png")
    class_section, unet = KINDS["class"]
    unnamed = {**class_section, "class_label": {**class_section["class_label"], "names": []}}
    write_model_file(tmp / "class-unnamed.safetensors", unnamed, **unet)
    (tmp / "empty-run").mkdir()
    tensors, cfg = autoencoder_state(build_autoencoder(AutoencoderConfig(kind="kl", ch=32, ch_mult=(1,),
                                                                           num_res_blocks=1)))
    save_model_file(tmp / "autoencoder.safetensors", tensors, "autoencoder", cfg)
    return tmp


@pytest.mark.parametrize("argv, kind, message", [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_bad_input_is_one_clear_line_and_exit_code_2(argv, kind, message, files, tiny_models, capsys):
    import re
    import shlex

    text = argv.format(model=tiny_models.get(kind, ""), tmp=files)
    code = main(shlex.split(text))
    err = capsys.readouterr().err
    assert code == 2, f"exit code {code} for `ldmkit {text}`: {err}"
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {err}"
    command = text.split()[0] if text.split()[0] in COMMANDS else None  # (the unknown-command row)
    assert lines[0].startswith(f"ldmkit {command}: error: " if command else "ldmkit: error: "), lines[0]
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize("argv", ["sample {model} --guidance 5", "sample {model} --init-image {tmp}/image.png "
                                  "--strength 2", "sample {model} --mask {tmp}/mask.png", "sample {model} --width 0",
                                  "sample {model} --negative-prompt x", "upscale {tmp}/image.png --model {model}",
                                  "inpaint {tmp}/image.png {tmp}/mask.png --model {model}",
                                  f"train {LDM_CONFIG} --set first_stage={{tmp}}/nope",
                                  f"train {LDM_CONFIG} --set first_stage={{tmp}}/autoencoder.safetensors "
                                  "--set data.dataset=folder --set data.path={tmp}/empty-run",
                                  f"train-autoencoder {AE_CONFIG} --set data.dataset=folder "
                                  "--set data.path={tmp}/empty-run",
                                  "eval {model} --ref {tmp}/nope --n 2"])
def test_a_command_that_fails_its_checks_writes_nothing(argv, files, tiny_models, capsys):
    import shlex

    out = files / "never"
    assert main([*shlex.split(argv.format(model=tiny_models["none"], tmp=files)), "--out", str(out)]) == 2
    assert not out.exists(), capsys.readouterr().err


@pytest.mark.parametrize("argv, kind", [("upscale {tmp}/small.png --model {model}", "low_res"),
                                        ("inpaint {tmp}/image.png {tmp}/mask.png --model {model}", "inpaint"),
                                        ("sample {model} --n 1 --steps 1", "none")])
@pytest.mark.parametrize("name", ["out.jpg", "out.webp", "out.png"])
def test_an_out_named_like_an_image_file_is_never_made_a_folder(argv, kind, name, files, tiny_models, tmp_path,
                                                                 capsys):
    import shlex

    out = tmp_path / name
    code = main([*shlex.split(argv.format(model=tiny_models[kind], tmp=files)), "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    if name.endswith(".png") and not argv.startswith("sample"):  # upscale / inpaint: OUT is the PNG itself
        assert code == 0 and out.is_file(), err
    else:
        assert code == 2 and "names a" in err and not out.exists(), err

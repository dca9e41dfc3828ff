import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.checkpoint import save_model_file
from ldmkit.cli import main
from ldmkit.conditioning import ConditioningConfig
from ldmkit.config import to_dict
from ldmkit.data.images import to_uint8
from ldmkit.errors import ConfigError
from ldmkit.pipeline import read_params
from ldmkit.pipeline.checkpoint import KIND, ldm_tensors
from ldmkit.pipeline.generate import Pipeline
from ldmkit.pipeline.model import LatentDiffusion, LDMConfig
from ldmkit.pipeline.upscale import lr_multiple, upscale, upscale_tensor
from ldmkit.unet.config import UNetConfig


def tiny_sr(kind: str = "low_res") -> LatentDiffusion:
    """KL-f4 first stage + a small attention-free UNet (x4 SR: the LR image has the latent's size)."""
    torch.manual_seed(0)
    extra = {"low_res": 3, "inpaint": 5}[kind]
    cfg = LDMConfig(first_stage=AutoencoderConfig(kind="kl", ch=32, ch_mult=(1, 1, 1), num_res_blocks=1),
                    unet=UNetConfig(in_channels=4 + extra, out_channels=4, model_channels=32, channel_mult=(1, 2),
                                    num_res_blocks=1, attention_resolutions=(), num_heads=2),
                    conditioning=ConditioningConfig(kind=kind), image_size=32)
    model = LatentDiffusion(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and p.abs().max() == 0:  # zero-initialised output layers: make them matter
                p.normal_(0, 0.02)
    return model.eval()


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(tiny_sr())


def smooth_lr(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, 4, 4, generator=g) * 2 - 1, size=(h, w), mode="bilinear")[0]


def test_the_output_is_exactly_four_times_the_input_at_any_size(pipe):
    assert lr_multiple(pipe.model) == 2  # 4 x 2 px = f 4 x the UNet's multiple 2
    assert upscale_tensor(pipe, smooth_lr(5, 7), steps=2).shape == (1, 3, 20, 28)  # padded, one pass
    assert upscale_tensor(pipe, smooth_lr(13, 21), steps=2, tile=8, overlap=4).shape == (1, 3, 52, 84)  # tiles
    image = Image.fromarray(to_uint8(smooth_lr(9, 6)))
    assert upscale(pipe, image, steps=2).size == (24, 36)


def test_one_tile_gives_exactly_what_the_pipeline_gives(pipe):
    lr = smooth_lr(8, 12)
    direct = pipe(condition=lr, seed=3, steps=4)[0]  # the size follows from the condition: 32 x 48
    assert direct.size == (48, 32)
    ours = upscale_tensor(pipe, lr, steps=4, seed=3, color_fix=False)
    assert np.array_equal(to_uint8(ours[0]), np.asarray(direct))


def test_strength_starts_from_the_bicubic_enlargement(pipe):
    lr = smooth_lr(8, 12)
    plain = upscale_tensor(pipe, lr, steps=4, seed=3, color_fix=False)
    assert torch.equal(upscale_tensor(pipe, lr, steps=4, seed=3, color_fix=False, strength=1.0), plain)
    bicubic = F.interpolate(lr[None], scale_factor=4, mode="bicubic").clamp(-1, 1)
    kept = upscale_tensor(pipe, lr, steps=4, seed=3, color_fix=False, strength=0.0)  # no step: encoded and decoded
    assert torch.allclose(kept, pipe.decode(pipe.encode(bicubic)).float(), atol=1e-5)
    half = upscale_tensor(pipe, lr, steps=4, seed=3, color_fix=False, strength=0.5)
    assert not torch.equal(half, plain) and not torch.equal(half, kept)
    image = Image.fromarray(to_uint8(lr))
    assert '"strength": 0.5' in upscale(pipe, image, steps=2, strength=0.5).info["ldmkit"]


def test_tiles_agree_with_the_untiled_result_without_seams(pipe):
    lr = smooth_lr(24, 32)
    whole = upscale_tensor(pipe, lr, steps=4, seed=1, color_fix=False, tile=64)
    tiled = upscale_tensor(pipe, lr, steps=4, seed=1, color_fix=False, tile=12, overlap=6)
    other_seed = upscale_tensor(pipe, lr, steps=4, seed=2, color_fix=False, tile=64)
    diff = (tiled - whole).abs()
    assert diff.mean() < 0.5 * (other_seed - whole).abs().mean()
    for dim in (2, 3):  # no row or column stands out, as a seam would
        profile = diff.mean(dim=(0, 1, 5 - dim))
        assert profile.max() < 2.5 * diff.mean()


def test_color_fix_gives_the_output_the_mean_colour_of_the_input(pipe):
    lr = smooth_lr(16, 16) * 0.5
    fixed, raw = (upscale_tensor(pipe, lr, steps=2, color_fix=c) for c in (True, False))
    assert (fixed.mean(dim=(2, 3)) - lr.mean(dim=(1, 2))).abs().max() < 2e-3  # up to clamping
    assert (raw.mean(dim=(2, 3)) - lr.mean(dim=(1, 2))).abs().max() > 1e-2  # the random model drifts


def test_other_models_are_refused():
    with pytest.raises(ConfigError, match="super-resolution"):
        upscale_tensor(Pipeline(tiny_sr("inpaint")), smooth_lr(8, 8))


def test_cli_upscales_a_file(tmp_path):
    model = tiny_sr()
    save_model_file(tmp_path / "sr.safetensors", ldm_tensors(model), KIND, to_dict(model.config))
    Image.fromarray(to_uint8(smooth_lr(11, 6))).save(tmp_path / "small.png")
    code = main(["upscale", str(tmp_path / "small.png"), "--model", str(tmp_path / "sr.safetensors"), "--out",
                 str(tmp_path / "out"), "--steps", "2", "--tile", "8", "--overlap", "2", "--device", "cpu"])
    assert code == 0
    with Image.open(tmp_path / "out" / "small_x4.png") as result:
        assert result.size == (24, 44)
    params = read_params(tmp_path / "out" / "small_x4.png")  # the same generation metadata as `ldmkit sample`
    assert params["task"] == "upscale" and (params["tile"], params["overlap"], params["color_fix"]) == (8, 2, True)
    assert params["inputs"]["image"] == str((tmp_path / "small.png").resolve())
    assert params["condition"] == "<image 6x11>" and params["checkpoint_sha256"]


def test_tile_and_overlap_are_checked_never_adjusted(pipe):
    from ldmkit.pipeline.upscale import smallest_tile, tile_sizes

    model = pipe.model  # tiles in multiples of 2 LR px, at least 4
    assert (lr_multiple(model), smallest_tile(model)) == (2, 4)
    assert tile_sizes(model, 64) == (64, 16) and tile_sizes(model, 12) == (12, 2)  # default: a quarter, a multiple
    assert tile_sizes(model, 8, 6) == (8, 6) and tile_sizes(model, 4, 0) == (4, 0)
    for tile, overlap, message in ((9, 2, r"tile must be a whole number of LR pixels >= 4, a multiple of 2 .*got 9; "
                                              r"use e.g. 8"),
                                   (2, 0, r"tile must be .*>= 4.*got 2; use e.g. 4"),
                                   (8, 8, r"overlap must be a whole number of LR pixels in 0 .. 6, a multiple of 2 "
                                          r"\(less than the tile of 8\), got 8"),
                                   (8, 3, r"overlap must be .*got 3"), (8, -2, r"overlap must be .*got -2")):
        with pytest.raises(ConfigError, match=message):
            tile_sizes(model, tile, overlap)
        with pytest.raises(ConfigError, match=message):
            upscale(pipe, Image.fromarray(to_uint8(smooth_lr(12, 12))), steps=1, tile=tile, overlap=overlap)


def test_the_png_records_the_overlap_used(pipe, tmp_path):
    from ldmkit.pipeline import save_png

    save_png(upscale(pipe, Image.fromarray(to_uint8(smooth_lr(12, 20))), steps=1, tile=8), tmp_path / "up.png")
    params = read_params(tmp_path / "up.png")
    assert (params["tile"], params["overlap"]) == (8, 2)  # no overlap given: a quarter of the tile

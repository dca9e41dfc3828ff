import pytest
import torch

from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.features.efficientnet_lite import DEFAULT_TAPS, _pad_same, load_efficientnet_lite0, shipped_weights_path

# OpenMoji glyphs the network recognises at 224 px, with their ImageNet-1k class indices.
SOCCER_BALL, UMBRELLA, BANANA, JACK_O_LANTERN, VIOLIN = 805, 879, 954, 607, 889


def test_classifies_emoji_of_imagenet_objects(effnet, emoji):
    x = emoji("⚽☂🍌🎃🎻", 224, 170)  # (5, 3, 224, 224)
    labels = torch.tensor([SOCCER_BALL, UMBRELLA, BANANA, JACK_O_LANTERN, VIOLIN])
    with torch.no_grad():
        logits = effnet(x)  # (5, 1000)
    assert logits.shape == (5, 1000)
    top5 = logits.topk(5).indices
    assert (top5 == labels[:, None]).any(dim=1).all(), top5
    assert logits[:2].argmax(dim=1).tolist() == [SOCCER_BALL, UMBRELLA]
    assert logits[:2].softmax(dim=1).max(dim=1).values.min() > 0.3  # confident, not a lucky argmax


def test_stem_statistics_confirm_minus_one_to_one_input(effnet):
    """The stem BN's running mean must be the stem kernel applied to the mean ImageNet pixel in input scale."""
    kernel_sum = effnet.stem[0].weight.sum(dim=(2, 3))  # (32, 3)
    imagenet_mean = torch.tensor([0.485, 0.456, 0.406]) * 2 - 1  # in [-1, 1]
    predicted = kernel_sum @ imagenet_mean  # (32,)
    running = effnet.stem[1].running_mean
    assert torch.corrcoef(torch.stack([predicted, running]))[0, 1] > 0.9
    # Under ImageNet mean/std normalisation the predicted means would all be 0; the stored ones are not.
    assert running.abs().mean() > 0.1


@pytest.mark.parametrize("size", [32, 37, 64])
def test_feature_shapes_any_size(effnet, size):
    x = torch.zeros(2, 3, size, size)
    with torch.no_grad():
        taps = effnet.features(x)
        pooled = effnet.pooled(x)
    expected = [(2, c, -(-size // s), -(-size // s)) for c, s in zip(effnet.tap_channels, (2, 4, 8, 16, 32))]
    assert [tuple(t.shape) for t in taps] == expected
    assert pooled.shape == (2, 1280)


def test_feature_layers_in_requested_order(effnet):
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        a, b = effnet.features(x, (4, 0))
    assert a.shape[1] == 40 and b.shape[1] == 16
    with pytest.raises(ConfigError, match="0..15"):
        effnet.features(x, (16,))
    with pytest.raises(ConfigError, match=r"\(B, 3, H, W\)"):
        effnet.features(torch.zeros(1, 1, 32, 32), DEFAULT_TAPS)


def test_frozen_and_in_eval_mode(effnet):
    assert not effnet.training
    assert not any(p.requires_grad for p in effnet.parameters())


def test_tf_same_padding():
    x = torch.zeros(1, 1, 224, 224)
    # Stride 2 on an even size: TensorFlow pads nothing before and one pixel after.
    assert _pad_same(x, 3, 2).shape[-2:] == (225, 225)
    padded = _pad_same(torch.ones(1, 1, 4, 4), 3, 2)
    assert padded[0, 0, 0].sum() == 4 and padded[0, 0, -1].sum() == 0  # first row kept, zero row appended
    assert _pad_same(torch.zeros(1, 1, 7, 7), 5, 1).shape[-2:] == (11, 11)  # stride 1: k // 2 each side


def test_missing_file_names_the_fix(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match="nope.pth.*efficientnet-lite0-57934424.pth"):
        load_efficientnet_lite0(str(missing))


def test_wrong_file_is_rejected(tmp_path, vgg16_state):
    wrong = tmp_path / "vgg.pth"
    torch.save(vgg16_state(), wrong)
    with pytest.raises(CheckpointError, match=r"missing keys _conv_stem\.weight.*efficientnet-lite0-57934424"):
        load_efficientnet_lite0(str(wrong))
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_efficientnet_lite0(str(garbage))


def test_shape_mismatch_is_rejected(tmp_path):
    state = torch.load(shipped_weights_path(), weights_only=True)
    state["_fc.weight"] = state["_fc.weight"][:10]
    state["_fc.bias"] = state["_fc.bias"][:10]
    path = tmp_path / "ten_classes.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"'_fc\.(weight|bias)' has shape"):
        load_efficientnet_lite0(str(path))

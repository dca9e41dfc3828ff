import pytest
import torch

from ldmkit.conditioning import ConditioningConfig, build_conditioner
from ldmkit.conditioning.layout import PAD_LABEL, PAD_TOKEN, TOKENS_PER_BOX, LayoutEncoder, detokenize, tokenize
from ldmkit.conditioning.sections import LayoutConfig
from ldmkit.errors import ConfigError, DataError, ShapeError
from ldmkit.training.ldm import drop

CFG = LayoutConfig(num_classes=10, embed_dim=32, max_boxes=4, coord_bins=16, layers=1)


def encoder(seed: int = 0) -> LayoutEncoder:
    torch.manual_seed(seed)
    return build_conditioner(ConditioningConfig(kind="layout", layout=CFG))


def random_layouts(b: int, m: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    corners = torch.rand(b, m, 2, 2, generator=generator).sort(dim=2).values  # (B, M, 2 corners, xy)
    boxes = corners.reshape(b, m, 4)  # (x0, y0) <= (x1, y1)
    labels = torch.randint(0, 10, (b, m), generator=generator)
    labels[:, m // 2:][torch.rand(b, m - m // 2, generator=generator) < 0.5] = PAD_LABEL
    boxes[labels == PAD_LABEL] = 0
    return boxes, labels


def test_tokenisation_round_trip_within_half_a_bin():
    boxes, labels = random_layouts(6, 4, torch.Generator().manual_seed(0))
    boxes[0, 0] = torch.tensor([0.0, 0.0, 1.0, 1.0])  # the canvas corners land in the first and last bin
    labels[0, 0] = 3
    tokens = tokenize(boxes, labels, 10, 16)
    assert tokens.shape == (6, 4 * TOKENS_PER_BOX) and tokens.dtype == torch.int64
    per_box = tokens.view(6, 4, TOKENS_PER_BOX)
    real = labels != PAD_LABEL
    assert torch.all((per_box[..., 0][real] >= 1) & (per_box[..., 0][real] <= 10))  # class tokens
    assert torch.all((per_box[..., 1:][real] >= 11) & (per_box[..., 1:][real] <= 26))  # coordinate tokens
    assert torch.all(per_box[~real] == PAD_TOKEN)
    assert per_box[0, 0].tolist() == [4, 11, 11, 26, 26]
    back_boxes, back_labels = detokenize(tokens, 10, 16)
    assert torch.equal(back_labels, labels)
    assert (back_boxes - boxes)[real].abs().max() <= 0.5 / 16 + 1e-6
    assert torch.equal(tokenize(back_boxes, back_labels, 10, 16), tokens)  # bin centres are fixed points


def layout(boxes, labels) -> dict:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}


def test_context_shapes_null_and_padding():
    enc = encoder()
    boxes = [[0.1, 0.2, 0.5, 0.6], [0.5, 0.5, 1.0, 1.0]]
    one = enc(layout([boxes, boxes], [[3, 7], [3, 7]]))["context"]
    assert one.shape == (2, 4 * TOKENS_PER_BOX, 32) and torch.equal(one[0], one[1])
    pad = [0.0, 0.0, 0.0, 0.0]
    padded = enc(layout([[boxes[0], pad, boxes[1], pad]], [[3, PAD_LABEL, 7, PAD_LABEL]]))["context"]
    torch.testing.assert_close(padded[0], one[0])  # padded from 2 to 4 boxes: padding rows anywhere are ignored
    null = enc.null(2, torch.device("cpu"))["context"]
    assert null.shape == (1, 20, 32)
    empty = enc(layout([[pad] * 4, boxes + [pad] * 2], [[PAD_LABEL] * 4, [3, 7, PAD_LABEL, PAD_LABEL]]))["context"]
    torch.testing.assert_close(empty[0], null[0])  # the all-padding layout is the null one
    torch.testing.assert_close(empty[1], one[0])
    assert not torch.allclose(one[0], null[0])
    moved = enc(layout([[[0.3, 0.2, 0.7, 0.6], [0.5, 0.5, 1.0, 1.0]]], [[3, 7]]))["context"]
    assert not torch.allclose(moved[0], one[0])  # coordinates matter, not just classes


def test_drop_gives_the_null_layout_and_gradients_reach_the_embeddings():
    enc = encoder()
    boxes, labels = random_layouts(4, 4, torch.Generator().manual_seed(1))
    labels[:, 0] = 2  # at least one box each
    cond = enc({"boxes": boxes, "labels": labels})
    dropped = drop(cond, enc.null(4, torch.device("cpu")), torch.tensor([True, False, True, False]))["context"]
    null = enc.null(1, torch.device("cpu"))["context"][0]
    assert torch.equal(dropped[0], cond["context"][0]) and torch.allclose(dropped[1], null)
    dropped.square().mean().backward()
    assert enc.transformer.token_emb.weight.grad.abs().sum() > 0


def test_bad_layouts_say_what_is_wrong():
    enc = encoder()
    with pytest.raises(ShapeError, match="5 boxes but this model reads at most max_boxes=4"):
        enc(layout([[[0, 0, 0.5, 0.5]] * 5], [[1] * 5]))
    with pytest.raises(DataError, match=r"box labels must be in \[0, 10\)"):
        enc(layout([[[0, 0, 0.5, 0.5]]], [[10]]))
    with pytest.raises(DataError, match="normalised corners"):
        enc(layout([[[0, 0, 32, 32]]], [[1]]))
    with pytest.raises(DataError, match="normalised corners"):
        enc(layout([[[0.5, 0, 0.2, 0.5]]], [[1]]))
    with pytest.raises(DataError, match="integer class indices"):
        enc(layout([[[0, 0, 0.5, 0.5]]], [[1.0]]))
    with pytest.raises(ShapeError, match=r"boxes \(B, M, 4\) and labels \(B, M\), got \(1, 2, 4\) and \(1, 1\)"):
        enc(layout([[[0, 0, 0.5, 0.5]] * 2], [[1]]))
    with pytest.raises(DataError, match="a layout condition is"):
        enc([[0, 0, 1, 1]])
    with pytest.raises(ConfigError, match="conditioning.layout.coord_bins must be >= 1"):
        LayoutConfig(coord_bins=0)

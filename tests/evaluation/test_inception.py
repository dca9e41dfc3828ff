"""The FID Inception-v3 against the layout of pytorch-fid's pt_inception-2015-12-05-6726825d.pth.

The expected keys and shapes are written out here from the published architecture (torchvision's
Inception3 layer names and widths, aux classifier removed, 1008 classes), independently of the
module's own tables; a file in that layout must load strictly, and the network must run at 299 px.
"""

import pytest
import torch

from ldmkit.errors import CheckpointError
from ldmkit.evaluation.feature_networks import build_feature_network
from ldmkit.evaluation.inception import WEIGHTS_FILE, WEIGHTS_URL, FIDInceptionV3, find_inception_weights

STEM = [("Conv2d_1a_3x3", 3, 32, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3), ("Conv2d_2b_3x3", 32, 64, 3, 3),
        ("Conv2d_3b_1x1", 64, 80, 1, 1), ("Conv2d_4a_3x3", 80, 192, 3, 3)]


def block_a(c, pool):  # 35x35
    return [("branch1x1", c, 64, 1, 1), ("branch5x5_1", c, 48, 1, 1), ("branch5x5_2", 48, 64, 5, 5),
            ("branch3x3dbl_1", c, 64, 1, 1), ("branch3x3dbl_2", 64, 96, 3, 3), ("branch3x3dbl_3", 96, 96, 3, 3),
            ("branch_pool", c, pool, 1, 1)]


def block_c(c7):  # 17x17
    return [("branch1x1", 768, 192, 1, 1), ("branch7x7_1", 768, c7, 1, 1), ("branch7x7_2", c7, c7, 1, 7),
            ("branch7x7_3", c7, 192, 7, 1), ("branch7x7dbl_1", 768, c7, 1, 1), ("branch7x7dbl_2", c7, c7, 7, 1),
            ("branch7x7dbl_3", c7, c7, 1, 7), ("branch7x7dbl_4", c7, c7, 7, 1), ("branch7x7dbl_5", c7, 192, 1, 7),
            ("branch_pool", 768, 192, 1, 1)]


def block_e(c):  # 8x8
    return [("branch1x1", c, 320, 1, 1), ("branch3x3_1", c, 384, 1, 1), ("branch3x3_2a", 384, 384, 1, 3),
            ("branch3x3_2b", 384, 384, 3, 1), ("branch3x3dbl_1", c, 448, 1, 1), ("branch3x3dbl_2", 448, 384, 3, 3),
            ("branch3x3dbl_3a", 384, 384, 1, 3), ("branch3x3dbl_3b", 384, 384, 3, 1), ("branch_pool", c, 192, 1, 1)]


BLOCKS = {
    "Mixed_5b": block_a(192, 32), "Mixed_5c": block_a(256, 64), "Mixed_5d": block_a(288, 64),
    "Mixed_6a": [("branch3x3", 288, 384, 3, 3), ("branch3x3dbl_1", 288, 64, 1, 1), ("branch3x3dbl_2", 64, 96, 3, 3),
                 ("branch3x3dbl_3", 96, 96, 3, 3)],
    "Mixed_6b": block_c(128), "Mixed_6c": block_c(160), "Mixed_6d": block_c(160), "Mixed_6e": block_c(192),
    "Mixed_7a": [("branch3x3_1", 768, 192, 1, 1), ("branch3x3_2", 192, 320, 3, 3), ("branch7x7x3_1", 768, 192, 1, 1),
                 ("branch7x7x3_2", 192, 192, 1, 7), ("branch7x7x3_3", 192, 192, 7, 1),
                 ("branch7x7x3_4", 192, 192, 3, 3)],
    "Mixed_7b": block_e(1280), "Mixed_7c": block_e(2048),
}


def standard_layout() -> dict[str, tuple[int, ...]]:
    """Every tensor of pt_inception-2015-12-05 with its shape: 94 conv+BN layers and the 1008-way fc."""
    convs = [(name, *rest) for name, *rest in STEM]
    convs += [(f"{block}.{name}", *rest) for block, layers in BLOCKS.items() for name, *rest in layers]
    shapes = {}
    for name, c_in, c_out, kh, kw in convs:
        shapes[f"{name}.conv.weight"] = (c_out, c_in, kh, kw)
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{part}"] = (c_out,)
    shapes["fc.weight"], shapes["fc.bias"] = (1008, 2048), (1008,)
    return shapes


def test_module_names_and_shapes_are_those_of_the_standard_weight_file():
    layout = standard_layout()
    assert len(layout) == 94 * 5 + 2
    model = FIDInceptionV3()
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if "num_batches_tracked" not in k}
    assert own == layout
    # torchvision documents 27,161,264 parameters for inception_v3 (1000 classes, with the aux head of
    # 3,326,696); without it and with 1008 classes: 27,161,264 - 3,326,696 + 8 * 2049.
    assert sum(p.numel() for p in model.parameters()) == 27_161_264 - 3_326_696 + 8 * 2049


def test_a_file_in_the_standard_layout_loads_strictly_and_gives_2048_features_and_1008_logits(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=g) * 0.05 for k, shape in standard_layout().items()}
    for k in state:
        if k.endswith("running_var"):
            state[k] = state[k].abs() + 1
    path = tmp_path / WEIGHTS_FILE
    torch.save(state, path)
    network = build_feature_network("inception", inception_weights=path)
    last = "Mixed_7c.branch3x3dbl_3b.conv.weight"
    assert torch.equal(network.backbone.get_parameter(last), state[last])
    assert torch.equal(network.backbone.fc.weight, state["fc.weight"])
    shapes = {}
    for name in ("Mixed_5d", "Mixed_6e", "Mixed_7c"):
        getattr(network.backbone, name).register_forward_hook(
            lambda module, args, out, name=name: shapes.__setitem__(name, tuple(out.shape)))
    features, logits = network(torch.rand(1, 3, 32, 32) * 2 - 1)  # resized to 299 inside
    assert shapes == {"Mixed_5d": (1, 288, 35, 35), "Mixed_6e": (1, 768, 17, 17), "Mixed_7c": (1, 2048, 8, 8)}
    assert features.shape == (1, 2048) and logits.shape == (1, 1008)
    torch.testing.assert_close(logits, features @ state["fc.weight"].T)  # torch-fidelity's IS logits: no bias
    assert network.labels["fd"] == "FID" and network.key.startswith("inception-299px")


def test_a_file_of_another_layout_is_refused_with_the_key_named(tmp_path):
    path = tmp_path / "torchvision_inception.pth"
    torch.save({"AuxLogits.fc.weight": torch.zeros(1000, 768), "fc.weight": torch.zeros(1000, 2048)}, path)
    with pytest.raises(CheckpointError, match="missing keys Conv2d_1a_3x3.conv.weight.*unexpected keys AuxLogits"):
        build_feature_network("inception", inception_weights=path)


def test_missing_weights_say_where_to_put_them_and_that_effnet_is_the_offline_default(tmp_path, monkeypatch):
    monkeypatch.setenv("LDMKIT_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError) as err:
        find_inception_weights()
    message = str(err.value)
    assert WEIGHTS_URL in message and str(tmp_path / WEIGHTS_FILE) in message and "--features effnet" in message
    (tmp_path / WEIGHTS_FILE).write_bytes(b"")
    assert find_inception_weights() == tmp_path / WEIGHTS_FILE
    with pytest.raises(CheckpointError, match="do not exist"):
        find_inception_weights(tmp_path / "elsewhere.pth")

"""The FID Inception-v3: TensorFlow's 2015-12-05 ImageNet graph, the network every published FID uses.

Weights: ``pt_inception-2015-12-05-6726825d.pth``, the PyTorch port that pytorch-fid and
torch-fidelity load (a plain state dict, 472 tensors, ~24M parameters, 1008 output classes).
Nothing downloads: get it once from the pytorch-fid GitHub release

    https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth

and pass its path, or put it in the ldmkit cache folder (``$LDMKIT_CACHE``, default
``~/.cache/ldmkit/``), where `find_inception_weights` looks for it.

This is Inception-v3 (Szegedy et al., 2016) as the TF graph computes it, which differs from
torchvision's ImageNet model in three places: the average-pool branches of the 35x35, 17x17 and
first 8x8 blocks exclude the zero padding from the mean; the last 8x8 block (Mixed_7c) pools its
pool branch with a 3x3 *max* pool; and the classifier has 1008 outputs. Layer names follow the
TF graph (Conv2d_1a_3x3 ... Mixed_7c, each conv as `.conv` + `.bn`), which are the file's keys.

Input: images in [-1, 1] at 299 x 299 (`FeatureNetwork` resizes); outputs: the 2048-d pool3
features (FID, KID, precision/recall) and the 1008 logits (Inception Score).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ldmkit.errors import CheckpointError
from ldmkit.features.weight_files import load_into, read_state_dict
from ldmkit.paths import cache_dir

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
INPUT_SIZE, POOL_DIM, NUM_CLASSES, BN_EPS = 299, 2048, 1008, 1e-3

# Pseudo-layers of a branch: 3x3 pools. "avg" excludes the padding from the mean (TF's rule).
AVG, MAX, MAX_S2 = "avg", "max", "max/2"


class BasicConv2d(nn.Module):
    """conv (no bias) -> BN (eps 1e-3) -> ReLU; state-dict names `conv.*` and `bn.*`, as the file."""

    def __init__(self, c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _pool(kind: str, x: torch.Tensor) -> torch.Tensor:
    if kind == AVG:
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    if kind == MAX:
        return F.max_pool2d(x, 3, stride=1, padding=1)
    return F.max_pool2d(x, 3, stride=2)  # MAX_S2: the grid-reduction blocks' pool branch


class Mixed(nn.Module):
    """An Inception block: parallel branches, each a chain of named convs / pools, concatenated on channels.

    `convs` maps a layer name to (c_in, c_out, kernel, stride, padding); a branch is a tuple of
    layer names, pools (AVG, MAX, MAX_S2), or a tuple of names applied side by side and concatenated
    (the 8x8 blocks' 1x3 / 3x1 split).
    """

    def __init__(self, convs: dict[str, tuple], branches: list[tuple]):
        super().__init__()
        for name, (c_in, c_out, kernel, stride, padding) in convs.items():
            self.add_module(name, BasicConv2d(c_in, c_out, kernel, stride, padding))
        self.branches = branches

    def _run(self, step, x: torch.Tensor) -> torch.Tensor:
        if isinstance(step, tuple):
            return torch.cat([self._run(s, x) for s in step], dim=1)
        if step in (AVG, MAX, MAX_S2):
            return _pool(step, x)
        return getattr(self, step)(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for branch in self.branches:
            h = x
            for step in branch:
                h = self._run(step, h)
            outs.append(h)
        return torch.cat(outs, dim=1)


def block_35(c_in: int, pool_features: int) -> Mixed:
    """Mixed_5b/c/d (35x35): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + pool_features channels."""
    return Mixed({
        "branch1x1": (c_in, 64, 1, 1, 0),
        "branch5x5_1": (c_in, 48, 1, 1, 0), "branch5x5_2": (48, 64, 5, 1, 2),
        "branch3x3dbl_1": (c_in, 64, 1, 1, 0), "branch3x3dbl_2": (64, 96, 3, 1, 1),
        "branch3x3dbl_3": (96, 96, 3, 1, 1),
        "branch_pool": (c_in, pool_features, 1, 1, 0),
    }, [("branch1x1",), ("branch5x5_1", "branch5x5_2"), ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
        (AVG, "branch_pool")])


def reduction_35_to_17(c_in: int) -> Mixed:
    """Mixed_6a: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 -> 384 + 96 + c_in channels at 17x17."""
    return Mixed({
        "branch3x3": (c_in, 384, 3, 2, 0),
        "branch3x3dbl_1": (c_in, 64, 1, 1, 0), "branch3x3dbl_2": (64, 96, 3, 1, 1),
        "branch3x3dbl_3": (96, 96, 3, 2, 0),
    }, [("branch3x3",), ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), (MAX_S2,)])


def block_17(c_in: int, c7: int) -> Mixed:
    """Mixed_6b..e (17x17), 7x7 convs factorised into 1x7 and 7x1 -> 768 channels."""
    row, col = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))  # (kernel, stride, padding)
    return Mixed({
        "branch1x1": (c_in, 192, 1, 1, 0),
        "branch7x7_1": (c_in, c7, 1, 1, 0), "branch7x7_2": (c7, c7, *row), "branch7x7_3": (c7, 192, *col),
        "branch7x7dbl_1": (c_in, c7, 1, 1, 0), "branch7x7dbl_2": (c7, c7, *col), "branch7x7dbl_3": (c7, c7, *row),
        "branch7x7dbl_4": (c7, c7, *col), "branch7x7dbl_5": (c7, 192, *row),
        "branch_pool": (c_in, 192, 1, 1, 0),
    }, [("branch1x1",), ("branch7x7_1", "branch7x7_2", "branch7x7_3"),
        tuple(f"branch7x7dbl_{i}" for i in range(1, 6)), (AVG, "branch_pool")])


def reduction_17_to_8(c_in: int) -> Mixed:
    """Mixed_7a: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 -> 320 + 192 + c_in channels at 8x8."""
    return Mixed({
        "branch3x3_1": (c_in, 192, 1, 1, 0), "branch3x3_2": (192, 320, 3, 2, 0),
        "branch7x7x3_1": (c_in, 192, 1, 1, 0), "branch7x7x3_2": (192, 192, (1, 7), 1, (0, 3)),
        "branch7x7x3_3": (192, 192, (7, 1), 1, (3, 0)), "branch7x7x3_4": (192, 192, 3, 2, 0),
    }, [("branch3x3_1", "branch3x3_2"), tuple(f"branch7x7x3_{i}" for i in range(1, 5)), (MAX_S2,)])


def block_8(c_in: int, pool: str) -> Mixed:
    """Mixed_7b/c (8x8): 1x1 | 1x1-(1x3,3x1) | 1x1-3x3-(1x3,3x1) | pool-1x1 -> 2048 channels."""
    row, col = ((1, 3), 1, (0, 1)), ((3, 1), 1, (1, 0))
    return Mixed({
        "branch1x1": (c_in, 320, 1, 1, 0),
        "branch3x3_1": (c_in, 384, 1, 1, 0), "branch3x3_2a": (384, 384, *row), "branch3x3_2b": (384, 384, *col),
        "branch3x3dbl_1": (c_in, 448, 1, 1, 0), "branch3x3dbl_2": (448, 384, 3, 1, 1),
        "branch3x3dbl_3a": (384, 384, *row), "branch3x3dbl_3b": (384, 384, *col),
        "branch_pool": (c_in, 192, 1, 1, 0),
    }, [("branch1x1",), ("branch3x3_1", ("branch3x3_2a", "branch3x3_2b")),
        ("branch3x3dbl_1", "branch3x3dbl_2", ("branch3x3dbl_3a", "branch3x3dbl_3b")), (pool, "branch_pool")])


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 for images in [-1, 1] of 299 x 299; `load_fid_inception` gives it weights."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = block_35(192, 32), block_35(256, 64), block_35(288, 64)
        self.Mixed_6a = reduction_35_to_17(288)
        self.Mixed_6b, self.Mixed_6c = block_17(768, 128), block_17(768, 160)
        self.Mixed_6d, self.Mixed_6e = block_17(768, 160), block_17(768, 192)
        self.Mixed_7a = reduction_17_to_8(768)
        self.Mixed_7b, self.Mixed_7c = block_8(1280, AVG), block_8(2048, MAX)
        self.fc = nn.Linear(POOL_DIM, NUM_CLASSES)

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 299, 299) in [-1, 1] -> (B, 2048) pool3 features."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (B, 64, 147, 147)
        x = F.max_pool2d(x, 3, stride=2)  # (B, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (B, 192, 71, 71)
        x = F.max_pool2d(x, 3, stride=2)  # (B, 192, 35, 35)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # (B, 288, 35, 35)
        x = self.Mixed_6a(x)  # (B, 768, 17, 17)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # (B, 768, 17, 17)
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))  # (B, 2048, 8, 8)
        return x.mean(dim=(2, 3))  # (B, 2048)

    def logits(self, pool: torch.Tensor) -> torch.Tensor:
        """(B, 2048) -> (B, 1008) class logits without the fc bias: torch-fidelity's Inception Score input."""
        return pool @ self.fc.weight.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1008) logits of the full classifier (with bias)."""
        return self.fc(self.pool3(x))


def find_inception_weights(path: str | Path | None = None) -> Path:
    """`path`, or the weights file in the ldmkit cache folder; a clear error when neither exists."""
    if path is not None:
        if not Path(path).expanduser().is_file():
            raise CheckpointError(f"Inception weights {path} do not exist; {_where_to_get_them()}")
        return Path(path).expanduser()
    candidate = cache_dir(create=False) / WEIGHTS_FILE
    if candidate.is_file():
        return candidate
    raise CheckpointError(f"no FID Inception weights: {candidate} does not exist. {_where_to_get_them()}")


def _where_to_get_them() -> str:
    return (f"download {WEIGHTS_FILE} once from {WEIGHTS_URL} (pytorch-fid's release) and put it in "
            f"{cache_dir(create=False)}/ (the ldmkit cache: $LDMKIT_CACHE or ~/.cache/ldmkit) or pass its path "
            "(--inception-weights PATH). Without it, use the offline default --features effnet: FD-EffNet, "
            "KID-EffNet, ... are the same metrics in EfficientNet-Lite0 feature space (not comparable to FID)")


def load_fid_inception(path: str | Path | None = None) -> FIDInceptionV3:
    """A frozen, eval-mode FID Inception-v3 from pytorch-fid's weight file (or a .safetensors with its keys)."""
    path = find_inception_weights(path)
    fix = f"pass pytorch-fid's {WEIGHTS_FILE} ({WEIGHTS_URL})"
    model = FIDInceptionV3()
    load_into(model, read_state_dict(path, fix), path, fix)
    return model.eval().requires_grad_(False)

import math

import pytest

from ldmkit.config import from_dict
from ldmkit.errors import ConfigError
from ldmkit.training.config import TrainConfig, learning_rate


def test_warmup_then_constant_or_cosine():
    cfg = TrainConfig(steps=110, lr=1.0, warmup_steps=10)
    assert [learning_rate(cfg, s) for s in (0, 4, 9, 10, 109)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    cos = TrainConfig(steps=110, lr=1.0, warmup_steps=10, lr_schedule="cosine", min_lr_ratio=0.1)
    assert learning_rate(cos, 10) == 1.0
    assert math.isclose(learning_rate(cos, 60), 0.1 + 0.9 * 0.5)
    assert math.isclose(learning_rate(cos, 110), 0.1)


def test_batch_must_split_into_micro_batches():
    with pytest.raises(ConfigError, match="not divisible by train.grad_accum"):
        from_dict(TrainConfig, {"batch_size": 6, "grad_accum": 4})

"""Loading LDM model files: the UNet made in the dtype it runs in, its weights read tensor by tensor."""

import re

import numpy as np
import pytest
import torch

import ldmkit
from ldmkit import state_dicts
from ldmkit.checkpoint import save_model_file
from ldmkit.config import to_dict
from ldmkit.errors import CheckpointError
from ldmkit.pipeline import Pipeline
from ldmkit.pipeline.checkpoint import KIND, ldm_tensors, load_ldm
from tests.pipeline.conftest import tiny_ldm


def test_the_unet_is_made_in_the_asked_dtype_with_the_files_ema_weights(ldm_file, monkeypatch):
    reference = load_ldm(ldm_file)  # float32
    monkeypatch.setattr(state_dicts, "READ_BUDGET", 1)  # one tensor per mapping of the file
    half = load_ldm(ldm_file, unet_dtype=torch.bfloat16)
    assert {p.dtype for p in half.unet.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in half.first_stage.parameters()} == {torch.float32}
    for (name, a), (_, b) in zip(reference.state_dict().items(), half.state_dict().items()):
        assert torch.equal(a.to(b.dtype), b), name  # the float32 weights, rounded once
    raw = load_ldm(ldm_file, use_ema=False)
    assert not torch.equal(raw.unet.out[-1].weight, reference.unet.out[-1].weight)  # the EMA copies differ


def test_sampling_in_bfloat16_gives_what_casting_a_float32_model_gives(ldm_file):
    direct = ldmkit.load(ldm_file, device="cpu", dtype="bfloat16")
    assert next(direct.model.unet.parameters()).dtype == torch.bfloat16
    cast = Pipeline(load_ldm(ldm_file), "cpu", dtype=torch.bfloat16)
    assert np.array_equal(np.asarray(direct(n=2, steps=3)[1]), np.asarray(cast(n=2, steps=3)[1]))


def test_a_file_that_does_not_fit_names_the_tensors(tmp_path):
    model = tiny_ldm()
    tensors = ldm_tensors(model)
    name = next(k for k in tensors if k.startswith("unet.") and tensors[k].dim() == 4)
    tensors[name] = tensors[name][:1]
    del tensors["unet.out.2.bias"]
    tensors["unet.extra.weight"] = torch.zeros(1)
    save_model_file(tmp_path / "bad.safetensors", tensors, KIND, to_dict(model.config))
    expected = rf"missing unet\.out\.2\.bias; unexpected unet\.extra\.weight; wrong shape {re.escape(name)}: file \(1,"
    with pytest.raises(CheckpointError, match=expected):
        load_ldm(tmp_path / "bad.safetensors", unet_dtype=torch.bfloat16)

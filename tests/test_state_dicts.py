import pytest
import torch

from ldmkit import state_dicts
from ldmkit.errors import CheckpointError


def test_sources_rename_and_join_tensors_of_several_files_into_the_modules_dtype(tmp_path, monkeypatch):
    """load_exact_from_files (tensor by tensor) and converted_state_dict (whole) make the same tensors from one
    set of Sources: here a conv1d weight joined from two matrices in two files, and a renamed bias."""
    from safetensors.torch import save_file

    a, b, bias = torch.randn(2, 2), torch.randn(2, 2), torch.randn(4)
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    save_file({"a": a, "shift": bias}, str(one))
    save_file({"b": b}, str(two))
    files = {"a": one, "shift": one, "b": two}
    sources = {"weight": state_dicts.Source(("a", "b"), lambda a, b: torch.cat([a, b])[:, :, None]),
               "bias": state_dicts.Source(("shift",))}
    expected = {"weight": torch.cat([a, b])[:, :, None], "bias": bias}
    module = torch.nn.Conv1d(2, 4, 1).to(torch.bfloat16)
    monkeypatch.setattr(state_dicts, "READ_BUDGET", 1)  # one tensor per mapping of the files
    state_dicts.load_exact_from_files(module, files, sources, "the files")
    assert all(torch.equal(module.state_dict()[k], v.to(torch.bfloat16)) for k, v in expected.items())
    converted = state_dicts.converted_state_dict(sources, {"a": a, "b": b, "shift": bias}, "the dict")
    assert converted.keys() == expected.keys() and all(torch.equal(converted[k], v) for k, v in expected.items())

    save_file({"a": torch.randn(3, 2), "spare": bias}, str(one))  # shift gone, a too tall
    with pytest.raises(CheckpointError) as err:
        state_dicts.load_exact_from_files(module, files, sources, "the files", unexpected=["spare"], fix="fix it")
    assert str(err.value) == ("the files does not match the Conv1d its config describes (missing shift (for bias); "
                              "unexpected spare; wrong shape a + b (for weight): file (3, 2) + (2, 2) vs model "
                              "(4, 2, 1)); fix it")
    with pytest.raises(CheckpointError, match=r"^the dict does not fit this config \(missing shift \(for bias\); "
                                              r"unexpected spare\)$"):
        state_dicts.converted_state_dict(sources, {"a": a, "b": b, "spare": bias}, "the dict")


def test_safetensors_metadata_reads_the_header_and_names_an_unreadable_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "a.safetensors", metadata={"ldmkit.kind": "ldm"})
    assert state_dicts.safetensors_metadata(tmp_path / "a.safetensors") == {"ldmkit.kind": "ldm"}
    (tmp_path / "b.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"b.safetensors is not a readable safetensors file .*; give another"):
        state_dicts.safetensors_metadata(tmp_path / "b.safetensors", fix="give another")

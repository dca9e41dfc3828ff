"""CompVis' first_stage_model.* weights load by name and reproduce their encode/decode outputs.

Uses the golden fixtures under $LDMKIT_COMPVIS_FIXTURES (default: ../shared/fixtures/compvis beside the
repository, as in tests/interop/test_compvis_fixtures.py). Skipped only where that folder does not
exist; a case missing from it fails. The naming itself is also covered without fixtures in test_model.py.
"""

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ldmkit.autoencoder import AutoencoderConfig, build_autoencoder

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("LDMKIT_COMPVIS_FIXTURES", REPO / ".." / "shared" / "fixtures" / "compvis")).resolve()


def close(actual, expected):
    assert (actual - expected).abs().max() <= 1e-4 + 1e-4 * expected.abs().max()


@pytest.mark.parametrize("case", ["kl_crossattn_class", "vq_uncond_attention"])
def test_compvis_first_stage_parity(case):
    if not ROOT.is_dir():
        pytest.skip(f"no CompVis fixtures folder at {ROOT}; set LDMKIT_COMPVIS_FIXTURES to it")
    folder = ROOT / case
    assert (folder / "case.json").is_file(), f"CompVis fixture case missing: {folder}"
    first = yaml.safe_load((folder / "config.yaml").read_text())["model"]["params"]["first_stage_config"]
    dd, params = first["params"]["ddconfig"], first["params"]
    cfg = AutoencoderConfig(
        kind="kl" if first["target"].endswith("AutoencoderKL") else "vq", in_channels=dd["in_channels"],
        ch=dd["ch"], ch_mult=tuple(dd["ch_mult"]), num_res_blocks=dd["num_res_blocks"],
        attn_factors=tuple(dd["resolution"] // r for r in dd["attn_resolutions"]), z_channels=dd["z_channels"],
        embed_dim=params["embed_dim"], n_embed=params.get("n_embed", 2), vq_restart_every=0)
    state = torch.load(folder / "model.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    prefix = "first_stage_model."
    model = build_autoencoder(cfg).eval()
    model.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
    spec = json.loads((folder / "case.json").read_text())
    inputs, expected = load_file(folder / "inputs.safetensors"), load_file(folder / "expected.safetensors")
    checks = {c["kind"]: c for c in spec["checks"]}
    enc, dec = checks["first_stage_encode"], checks["first_stage_decode"]
    with torch.no_grad():
        if cfg.kind == "kl":
            posterior = model.encode(inputs[enc["input"]])
            close(posterior.mode(), expected[enc["expected"]])
            close(posterior.logvar, expected[enc["expected_logvar"]])
        else:
            close(model.encode(inputs[enc["input"]]), expected[enc["expected"]])
        z = inputs[dec["input"]] / spec["scale_factor"]
        close(model.decode(z), expected[dec["expected"]])
        if "expected_codes" in dec:
            assert torch.equal(model.quantize.nearest(z), expected[dec["expected_codes"]])

"""Golden files: CompVis latent-diffusion checkpoints reproduce the original code's outputs in ldmkit.

Every case folder under $LDMKIT_COMPVIS_FIXTURES (default: ../shared/fixtures/compvis beside the
repository) is loaded through `load_compvis` from model.ckpt, and from model.safetensors where
case.json names one, and every check in its case.json must hold within the stated rule:
max|actual - expected| <= atol + rtol * max|expected| per tensor, integer tensors equal.
A case that cannot be loaded or names an unknown check kind fails; nothing is skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ldmkit.interop.compvis import load_compvis
from ldmkit.sampling import sample
from ldmkit.sampling.ddim import ddim_coefficients
from ldmkit.sampling.guidance import classifier_free_guidance, conditioned
from ldmkit.sampling.timesteps import discrete_timesteps

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("LDMKIT_COMPVIS_FIXTURES", REPO / ".." / "shared" / "fixtures" / "compvis")).resolve()
CASES = sorted(p.name for p in ROOT.iterdir() if p.is_dir()) if ROOT.is_dir() else []


class Case:
    def __init__(self, folder: Path):
        self.folder = folder
        self.spec = json.loads((folder / "case.json").read_text())
        files = self.spec["files"]
        self.inputs = load_file(folder / files["inputs"])
        self.expected = load_file(folder / files["expected"])
        tol = self.spec["tolerance"]
        self.atol, self.rtol = tol["atol"], tol["rtol"]
        self.deviations: dict[str, float] = {}
        self.failures: list[str] = []

    def raw(self, name: str | None):
        """A check's input by name: prompts from text_inputs, anything else from inputs.safetensors."""
        if name is None:
            return None
        prompts = self.spec.get("text_inputs", {})
        return list(prompts[name]) if name in prompts else self.inputs[name]

    def compare(self, label: str, actual: torch.Tensor, expected: torch.Tensor) -> None:
        actual = actual.detach().cpu()
        if actual.shape != expected.shape:
            self.failures.append(f"{label}: shape {tuple(actual.shape)} vs expected {tuple(expected.shape)}")
            return
        if not expected.is_floating_point():
            if not torch.equal(actual.to(expected.dtype), expected):
                self.failures.append(f"{label}: {int((actual != expected).sum())} integer entries differ")
            self.deviations[label] = float((actual.long() != expected.long()).sum())
            return
        deviation = float((actual.float() - expected).abs().max())
        bound = self.atol + self.rtol * float(expected.abs().max())
        self.deviations[label] = deviation
        if not deviation <= bound:  # also catches NaN
            self.failures.append(f"{label}: max|a-e| = {deviation:.3g} > {bound:.3g}")


def one(cond: dict) -> torch.Tensor:
    (value,) = cond.values()
    return value


def check_unet(case: Case, models: dict, check: dict, tag: str) -> None:
    unet, inputs = models[check["weights"]].unet, check["inputs"]
    context = case.inputs[inputs["context"]] if "context" in inputs else None
    out = unet(case.inputs[inputs["x"]], case.inputs[inputs["t"]], context=context)
    case.compare(f"{tag}{check['expected']}", out, case.expected[check["expected"]])


def check_apply_model(case: Case, models: dict, check: dict, tag: str) -> None:
    model, inputs = models[check["weights"]], check["inputs"]
    cond = case.expected[inputs["cond"]]
    bound = conditioned(model.unet, {"concat" if cond.ndim == 4 else "context": cond})
    case.compare(f"{tag}{check['expected']}", bound(case.inputs[inputs["x"]], case.inputs[inputs["t"]]),
                 case.expected[check["expected"]])


def check_encode(case: Case, models: dict, check: dict, tag: str) -> None:
    first = models["model"].first_stage
    encoded = first.encode(case.inputs[check["input"]])
    if first.config.kind == "kl":
        case.compare(f"{tag}{check['expected']}", encoded.mode(), case.expected[check["expected"]])
        if "expected_logvar" in check:
            case.compare(f"{tag}{check['expected_logvar']}", encoded.logvar, case.expected[check["expected_logvar"]])
    else:
        case.compare(f"{tag}{check['expected']}", encoded, case.expected[check["expected"]])


def decode_and_codes(case: Case, model, latent: torch.Tensor, expected: str, codes: str | None, tag: str) -> None:
    case.compare(f"{tag}{expected}", model.decode(latent), case.expected[expected])
    if codes is not None:
        nearest = model.first_stage.quantize.nearest(latent / model.config.scale_factor)
        case.compare(f"{tag}{codes}", nearest, case.expected[codes])


def check_decode(case: Case, models: dict, check: dict, tag: str) -> None:
    decode_and_codes(case, models["model"], case.inputs[check["input"]], check["expected"],
                     check.get("expected_codes"), tag)


def check_cond_stage(case: Case, models: dict, check: dict, tag: str) -> None:
    model = models["model"]
    raw = case.raw(check["input"])
    if "expected_tokens" in check:
        ids, _ = model.conditioner.tokenize(raw)
        case.compare(f"{tag}{check['expected_tokens']}", ids, case.inputs[check["expected_tokens"]])
    case.compare(f"{tag}{check['expected']}", one(model.condition(raw)),
                 case.expected[check["expected"]])


def check_ddim(case: Case, models: dict, check: dict, tag: str) -> None:
    model = models[check["weights"]]
    x_T = case.inputs[check["noise"]]
    assert list(x_T.shape[1:]) == check["shape"], "noise shape differs from the check's shape"
    steps = check["steps"]
    taus = discrete_timesteps(model.schedule.num_timesteps, steps, check["ddim_discretize"])
    if taus != check["timesteps"]:
        case.failures.append(f"{tag}timesteps {taus} != {check['timesteps']}")
    coefficients = ddim_coefficients(model.schedule, taus, check["eta"])
    for name, ours in (("a_t", "a_t"), ("a_prev", "a_prev"), ("sigma_t", "sigma"),
                       ("sqrt_one_minus_a_t", "sqrt_one_minus_at")):
        theirs = torch.tensor([c[name] for c in check["step_coefficients"]], dtype=torch.float32)
        case.compare(f"{tag}step_coefficients.{name}", coefficients[ours], theirs)
    cond = model.condition(case.raw(check["cond_input"])) if check["cond_input"] else {}
    guided = check["unconditional_input"] is not None and check["guidance_scale"] != 1
    if guided:
        uncond = model.condition(case.raw(check["unconditional_input"]))
        denoiser = classifier_free_guidance(model.unet, cond, uncond, check["guidance_scale"])
    else:
        denoiser = conditioned(model.unet, cond)
    steps_out = {"x": [], "x0": []}

    def keep(info: dict) -> None:
        steps_out["x"].append(info["x"])
        steps_out["x0"].append(info["x0"])

    latent = sample("ddim", denoiser, x_T, model.schedule, steps, eta=check["eta"], spacing=check["ddim_discretize"],
                    prediction=model.config.diffusion.prediction, callback=keep)
    case.compare(f"{tag}{check['expected_latent']}", latent, case.expected[check["expected_latent"]])
    case.compare(f"{tag}{check['expected_x_steps']}", torch.stack(steps_out["x"]),
                 case.expected[check["expected_x_steps"]])
    case.compare(f"{tag}{check['expected_pred_x0']}", torch.stack(steps_out["x0"]),
                 case.expected[check["expected_pred_x0"]])
    decode_and_codes(case, model, latent, check["expected_image"], check.get("expected_image_codes"), tag)


CHECKS = {"unet": check_unet, "apply_model": check_apply_model, "first_stage_encode": check_encode,
          "first_stage_decode": check_decode, "cond_stage": check_cond_stage, "ddim_sample": check_ddim}


def run_case(folder: Path) -> Case:
    """Load the case's checkpoint(s) with ldmkit and run all its checks; failures are collected on the Case."""
    case = Case(folder)
    files = case.spec["files"]
    unknown = sorted({c["kind"] for c in case.spec["checks"]} - set(CHECKS))
    assert not unknown, f"{folder.name}: unknown check kinds {unknown}"
    checkpoints = [files["checkpoint"]] + ([files["checkpoint_safetensors"]] if files.get("checkpoint_safetensors")
                                           else [])
    for checkpoint in checkpoints:
        tag = "" if checkpoint == files["checkpoint"] else "safetensors:"
        models = {"model": load_compvis(folder / checkpoint, folder / files["config"], use_ema=False)}
        if any(c.get("weights") == "ema" for c in case.spec["checks"]):
            models["ema"] = load_compvis(folder / checkpoint, folder / files["config"], use_ema=True)
        with torch.no_grad():
            for check in case.spec["checks"]:
                CHECKS[check["kind"]](case, models, check, tag)
    return case


@pytest.mark.parametrize("name", CASES or ["<no cases>"])
def test_compvis_case(name):
    assert CASES, f"no fixture cases under {ROOT}; set LDMKIT_COMPVIS_FIXTURES to the fixtures folder"
    case = run_case(ROOT / name)
    print(f"\n{name}: " + ", ".join(f"{k} {v:.2e}" for k, v in case.deviations.items()))
    assert not case.failures, f"{name}: " + "; ".join(case.failures)

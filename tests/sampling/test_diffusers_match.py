"""Independent cross-check against diffusers' schedulers, driven by the same toy eps(x, t) and noise.

Metric: max|ours - diffusers| / max|diffusers| over the final samples, required below 1e-5
(measured: below 1e-6 in float64 and float32). diffusers builds its tables in float32, so ldmkit's
schedule is taken from the diffusers scheduler's alphas_cumprod (`Schedule.from_alphas_cumprod`); the
schedule formulas themselves are compared in tests/diffusion/test_schedule.py.
"""

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from ldmkit.diffusion.noise import randn_like_per_sample, seeded_generators  # noqa: E402
from ldmkit.diffusion.schedule import Schedule  # noqa: E402
from ldmkit.sampling import sample  # noqa: E402
from ldmkit.sampling.denoiser import sigma_denoiser  # noqa: E402
from ldmkit.sampling.dpm_solver import sample_dpmpp_2m  # noqa: E402
from ldmkit.sampling.euler import sample_euler, sample_euler_ancestral  # noqa: E402
from ldmkit.sampling.heun import sample_heun  # noqa: E402
from ldmkit.sampling.sigmas import sigma_schedule  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

SEEDS = [3, 14, 15]
SHAPE = (3, 2, 4)
SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
TOL = 1e-5
DTYPES = [torch.float64, torch.float32]


def start(dtype):
    gens = seeded_generators(SEEDS)
    return randn_like_per_sample(SHAPE, gens, "cpu", dtype), gens


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def run_diffusers(scheduler, steps, model, dtype, stochastic=False, **step_kw):
    """The standard diffusers denoising loop; per-sample generators continue from the start noise."""
    scheduler.set_timesteps(steps)
    x, gens = start(dtype)
    x = x * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        eps = model(scheduler.scale_model_input(x, t), t.reshape(1).expand(SHAPE[0]))
        kw = dict(step_kw, generator=gens) if stochastic else step_kw
        x = scheduler.step(eps, t, x, **kw).prev_sample
    return x


def schedule_of(scheduler) -> Schedule:
    return Schedule.from_alphas_cumprod(scheduler.alphas_cumprod)


def ours(name, scheduler, steps, model, dtype, **options):
    x, gens = start(dtype)
    return sample(name, model, x, schedule_of(scheduler), steps, gens, **options)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ddpm(toy, dtype):
    scheduler = diffusers.DDPMScheduler(**SD, clip_sample=False)
    reference = run_diffusers(scheduler, 20, toy, dtype, stochastic=True)
    assert rel(ours("ddpm", scheduler, 20, toy, dtype), reference) < TOL


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_compvis_settings(toy, dtype, eta):
    # steps_offset=1 and set_alpha_to_one=False are CompVis' timesteps 1, 51, ... and a_prev = abar[0].
    scheduler = diffusers.DDIMScheduler(**SD, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    reference = run_diffusers(scheduler, 20, toy, dtype, stochastic=eta > 0, eta=eta)
    assert rel(ours("ddim", scheduler, 20, toy, dtype, eta=eta), reference) < TOL


@pytest.mark.parametrize("dtype", DTYPES)
def test_ddim_diffusers_defaults_trailing(toy, dtype):
    scheduler = diffusers.DDIMScheduler(**SD, clip_sample=False, timestep_spacing="trailing")
    reference = run_diffusers(scheduler, 20, toy, dtype, stochastic=True, eta=1.0)
    result = ours("ddim", scheduler, 20, toy, dtype, eta=1.0, spacing="trailing", final_alpha="one")
    assert rel(result, reference) < TOL


@pytest.mark.parametrize("dtype", DTYPES)
def test_plms_matches_pndm_without_prk(toy, dtype):
    scheduler = diffusers.PNDMScheduler(**SD, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    reference = run_diffusers(scheduler, 20, toy, dtype)
    assert rel(ours("plms", scheduler, 20, toy, dtype), reference) < TOL


def sigma_run(sampler, scheduler, steps, model, dtype, *, karras=False, interpolation="log",
              quantize_t=False, timesteps=None, start_scale="sigma", stochastic=False, prediction="eps"):
    schedule = schedule_of(scheduler)
    sigmas = sigma_schedule(schedule, steps, karras=karras, interpolation=interpolation, timesteps=timesteps)
    denoiser = sigma_denoiser(model, schedule, prediction, interpolation, quantize_t)
    x, gens = start(dtype)
    s0 = float(sigmas[0])
    x = x * (s0 if start_scale == "sigma" else (s0**2 + 1) ** 0.5)
    return sampler(denoiser, x, sigmas, gens) if stochastic else sampler(denoiser, x, sigmas)


# diffusers' Euler/Heun place sigmas by linear interpolation in sigma between training timesteps
# (interpolation="linear"); with Karras sigmas they map sigma -> t by log-sigma interpolation ("log").
# 10 steps put linspace timesteps on integers, 25 steps between them.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("karras", [False, True])
def test_euler(toy, dtype, steps, karras):
    scheduler = diffusers.EulerDiscreteScheduler(**SD, use_karras_sigmas=karras)
    reference = run_diffusers(scheduler, steps, toy, dtype)
    interpolation = "log" if karras else "linear"
    result = sigma_run(sample_euler, scheduler, steps, toy, dtype, karras=karras, interpolation=interpolation)
    assert rel(result, reference) < TOL


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [10, 25])
def test_euler_ancestral(toy, dtype, steps):
    scheduler = diffusers.EulerAncestralDiscreteScheduler(**SD)
    reference = run_diffusers(scheduler, steps, toy, dtype, stochastic=True)
    result = sigma_run(sample_euler_ancestral, scheduler, steps, toy, dtype, interpolation="linear", stochastic=True)
    assert rel(result, reference) < TOL


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("karras", [False, True])
def test_heun(toy, dtype, steps, karras):
    scheduler = diffusers.HeunDiscreteScheduler(**SD, use_karras_sigmas=karras)
    reference = run_diffusers(scheduler, steps, toy, dtype)
    interpolation = "log" if karras else "linear"
    result = sigma_run(sample_heun, scheduler, steps, toy, dtype, karras=karras, interpolation=interpolation)
    assert rel(result, reference) < TOL


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("karras", [False, True])
def test_dpmpp_2m(toy, dtype, steps, karras):
    # diffusers' DPM-Solver works on the variance-preserving x_t (start noise scaled by 1), visits
    # linspace(0, T - 1, S + 1).round() without 0, and rounds the timesteps of Karras sigmas.
    scheduler = diffusers.DPMSolverMultistepScheduler(**SD, use_karras_sigmas=karras)
    reference = run_diffusers(scheduler, steps, toy, dtype)
    timesteps = None if karras else np.linspace(0, 999, steps + 1).round()[::-1][:-1].tolist()
    result = sigma_run(
        sample_dpmpp_2m, scheduler, steps, toy, dtype, karras=karras, quantize_t=karras,
        timesteps=timesteps, start_scale="vp",
    )
    assert rel(result, reference) < TOL


@pytest.mark.parametrize("dtype", DTYPES)
def test_v_prediction_ddim_and_euler(toy, dtype):
    v_model = toy  # any function serves as a v-network; both sides read it as v
    ddim = diffusers.DDIMScheduler(
        **SD, clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction"
    )
    reference = run_diffusers(ddim, 20, v_model, dtype)
    assert rel(ours("ddim", ddim, 20, v_model, dtype, prediction="v"), reference) < TOL
    euler = diffusers.EulerDiscreteScheduler(**SD, prediction_type="v_prediction")
    reference = run_diffusers(euler, 25, v_model, dtype)
    result = sigma_run(sample_euler, euler, 25, v_model, dtype, interpolation="linear", prediction="v")
    assert rel(result, reference) < TOL


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("steps", [1, 3, 9, 30, 300, 999])
def test_sigmas_follow_the_timestep_spacing_as_diffusers_euler(spacing, offset, steps):
    """The sigma-space samplers' levels for a scheduler config's timestep_spacing and steps_offset: equal
    to diffusers' up to float32 rounding (diffusers keeps linspace timesteps in float32, a few ulps off)."""
    scheduler = diffusers.EulerDiscreteScheduler(**SD, timestep_spacing=spacing, steps_offset=offset)
    scheduler.set_timesteps(steps)
    schedule = schedule_of(scheduler)
    sigmas = sigma_schedule(schedule, steps, spacing, interpolation="linear", offset=offset)
    torch.testing.assert_close(sigmas.float(), scheduler.sigmas, rtol=4e-7, atol=0)
    if spacing != "linspace":  # integer timesteps: the log-sigma interpolation (the samplers' default) agrees
        torch.testing.assert_close(sigma_schedule(schedule, steps, spacing, offset=offset), sigmas)

import pytest
import torch

from ldmkit.diffusion.noise import randn_like_per_sample, seeded_generators
from ldmkit.errors import LdmkitError
from ldmkit.sampling import sample
from ldmkit.sampling.guidance import autoguidance, classifier_free_guidance, conditioned

B = 3


class RecordingUNet:
    """unet(x_t, t, context, concat, y) that reads every input and records each call's batch."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, context=None, concat=None, y=None):
        self.calls.append({"x": x, "t": t, "context": context, "concat": concat, "y": y})
        out = torch.tanh(x) * (1 + t.float().reshape(-1, 1, 1, 1) / 1000)
        if context is not None:
            out = out + context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)  # (B, N, D) tokens
        if concat is not None:
            out = out + 0.5 * concat[:, :1]  # (B, C, h, w) maps
        if y is not None:
            out = out + 0.1 * y.float().reshape(-1, 1, 1, 1)
        return out


def conditioning():
    g = torch.Generator().manual_seed(0)
    cond = {
        "context": torch.randn(B, 5, 8, generator=g),
        "concat": torch.randn(B, 2, 4, 4, generator=g),
        "y": torch.tensor([1, 2, 3]),
    }
    uncond = {"context": torch.zeros(1, 5, 8), "concat": cond["concat"].clone(), "y": torch.zeros(B, dtype=torch.long)}
    return cond, uncond


def inputs():
    x = torch.randn(B, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    return x, torch.tensor([10, 500, 999])


def test_scale_one_is_the_conditional_model():
    unet, (cond, uncond), (x, t) = RecordingUNet(), conditioning(), inputs()
    expected = unet(x, t, **cond)
    assert torch.equal(classifier_free_guidance(unet, cond, uncond, 1.0)(x, t), expected)
    batched = classifier_free_guidance(unet, cond, uncond, 1.0, short_circuit=False)(x, t)
    torch.testing.assert_close(batched, expected, rtol=0, atol=1e-6)


def test_one_batched_forward_uncond_first():
    unet, (cond, uncond), (x, t) = RecordingUNet(), conditioning(), inputs()
    out = classifier_free_guidance(unet, cond, uncond, 7.5)(x, t)
    assert len(unet.calls) == 1
    call = unet.calls[0]
    assert call["x"].shape[0] == 2 * B and torch.equal(call["t"], torch.cat([t, t]))
    assert torch.equal(call["context"][:B], uncond["context"].expand(B, 5, 8))
    assert torch.equal(call["context"][B:], cond["context"])
    assert torch.equal(call["y"], torch.cat([uncond["y"], cond["y"]]))
    eps_u, eps_c = unet(x, t, **{k: v.expand(B, *v.shape[1:]) for k, v in uncond.items()}), unet(x, t, **cond)
    torch.testing.assert_close(out, eps_u + 7.5 * (eps_c - eps_u), rtol=0, atol=1e-5)


def test_missing_entries_and_mismatches():
    unet, (x, t) = RecordingUNet(), inputs()
    cond = {"context": torch.ones(B, 2, 3), "concat": None}
    out = classifier_free_guidance(unet, cond, {"context": torch.zeros(B, 2, 3), "concat": None}, 3.0)(x, t)
    assert out.shape == x.shape and unet.calls[-1]["concat"] is None
    with pytest.raises(LdmkitError, match="unconditional version"):
        classifier_free_guidance(unet, cond, {"context": torch.zeros(B, 2, 3)}, 3.0)
    with pytest.raises(LdmkitError, match="must match"):
        classifier_free_guidance(unet, cond, {"context": torch.zeros(B, 4, 3), "concat": None}, 3.0)
    with pytest.raises(LdmkitError, match="only one of"):
        classifier_free_guidance(unet, cond, {"context": None, "concat": None}, 3.0)


def test_guided_sampling_at_scale_one_equals_conditional_sampling(ldm_schedule):
    unet, (cond, uncond) = RecordingUNet(), conditioning()
    gens = seeded_generators([1, 2, 3])
    x_T = randn_like_per_sample((B, 3, 4, 4), gens, "cpu", torch.float32)
    plain = sample("ddim", conditioned(unet, cond), x_T, ldm_schedule, 10)
    batched = classifier_free_guidance(unet, cond, uncond, 1.0, short_circuit=False)
    guided = sample("ddim", batched, x_T, ldm_schedule, 10)
    torch.testing.assert_close(guided, plain, rtol=0, atol=1e-5)
    stronger = sample("ddim", classifier_free_guidance(unet, cond, uncond, 5.0), x_T, ldm_schedule, 10)
    assert (stronger - plain).abs().max() > 1e-2


def test_guidance_in_an_interval_runs_one_conditional_call_outside_it():
    from ldmkit.diffusion.schedule import DiffusionConfig, Schedule
    from ldmkit.sampling.guidance import in_interval

    schedule = Schedule.from_config(DiffusionConfig())
    calls = []

    def unet(x, t, context=None):
        calls.append(x.shape[0])
        return x * context.mean(dim=(1, 2))[:, None]  # (B, 3): each sample scaled by its own context

    cond, uncond = {"context": torch.ones(2, 1, 4)}, {"context": torch.zeros(1, 1, 4)}
    guide_at = in_interval(schedule, 0.5, 2.0)
    model = classifier_free_guidance(unet, cond, uncond, 3.0, guide_at=guide_at)
    x = torch.ones(2, 3)
    sigma = schedule.sigmas  # (T,) float64, increasing
    inside = int((sigma > 0.5).nonzero()[0])  # the first timestep whose sigma is above 0.5
    outside = int((sigma > 2.0).nonzero()[0])
    assert torch.equal(model(x, torch.full((2,), inside)), x * 3.0) and calls == [4]  # [uncond; cond], guided
    assert torch.equal(model(x, torch.full((2,), outside)), x) and calls == [4, 2]  # the conditional call alone


def test_autoguidance_mixes_the_model_with_its_guide_each_on_its_own_condition():
    x, t = torch.randn(B, 4, 8, 8), torch.full((B,), 500)
    strong, weak = RecordingUNet(), RecordingUNet()
    cond, guide_cond = {"y": torch.tensor([1, 2, 3])}, {"y": torch.tensor([4, 5, 6])}
    out = autoguidance(strong, cond, weak, guide_cond, 2.5)(x, t)
    o_strong, o_weak = strong(x, t, **cond), weak(x, t, **guide_cond)
    torch.testing.assert_close(out, o_weak + 2.5 * (o_strong - o_weak))
    assert torch.equal(weak.calls[0]["y"], guide_cond["y"]) and torch.equal(strong.calls[0]["y"], cond["y"])
    torch.testing.assert_close(autoguidance(strong, cond, weak, guide_cond, 1.0)(x, t), o_strong)
    skipped = autoguidance(strong, cond, weak, guide_cond, 2.5, guide_at=lambda t: False)
    calls = len(weak.calls)
    assert torch.equal(skipped(x, t), o_strong) and len(weak.calls) == calls  # outside the interval: no guide call

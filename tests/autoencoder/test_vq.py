import torch

from ldmkit.autoencoder import VectorQuantizer
from ldmkit.autoencoder.vq import codebook_stats


def quantizer(n_embed=8, dim=3, **kw) -> VectorQuantizer:
    torch.manual_seed(0)
    vq = VectorQuantizer(n_embed, dim, beta=0.25, **kw)
    with torch.no_grad():
        vq.embedding.weight.normal_()
    return vq


def test_nearest_code_is_the_brute_force_argmin():
    vq = quantizer(n_embed=32, dim=4)
    h = torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(1))
    z = h.permute(0, 2, 3, 1).reshape(-1, 4)
    brute = torch.cdist(z.double(), vq.embedding.weight.double()).argmin(dim=1).view(2, 5, 6)
    assert torch.equal(vq.nearest(h), brute)


def test_quantize_values_loss_and_straight_through_gradient():
    vq = quantizer()
    h = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(2), requires_grad=True)
    z_q, loss, idx = vq.quantize(h)
    codes = vq.embedding.weight[idx].permute(0, 3, 1, 2)
    torch.testing.assert_close(z_q, codes)
    torch.testing.assert_close(loss, 1.25 * (codes - h).pow(2).mean())
    w = torch.randn_like(z_q)
    (grad_h,) = torch.autograd.grad((z_q * w).sum(), h)
    assert torch.equal(grad_h, w)  # identity gradient through the quantiser
    h.grad = None
    loss.backward()
    n = h.numel()
    torch.testing.assert_close(h.grad, 0.25 * 2 * (h - codes).detach() / n)  # commitment term only
    expected_codebook_grad = torch.zeros_like(vq.embedding.weight).index_add_(
        0, idx.flatten(), (2 * (codes - h) / n).detach().permute(0, 2, 3, 1).reshape(-1, 3))
    torch.testing.assert_close(vq.embedding.weight.grad, expected_codebook_grad)


def test_codebook_stats():
    stats = codebook_stats(torch.tensor([[0, 0, 1, 1]]), n_embed=8)
    torch.testing.assert_close(stats["perplexity"], torch.tensor(2.0))
    torch.testing.assert_close(stats["codes_used"], torch.tensor(0.25))


def clustered_batch(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[5.0, 0, 0], [-5, 0, 0], [0, 5, 0], [0, -5, 0], [0, 0, 5], [0, 0, -5]])
    pick = torch.randint(0, 6, (2 * 4 * 4,), generator=g)
    return (centres[pick] + 0.1 * torch.randn(32, 3, generator=g)).view(2, 4, 4, 3).permute(0, 3, 1, 2)


def test_dead_code_restart_revives_unused_codes():
    vq = quantizer(n_embed=8, restart_every=4, restart_threshold=0.5, usage_decay=0.5)
    with torch.no_grad():  # a collapsed codebook: code 0 at the origin takes every vector
        vq.embedding.weight.fill_(100.0)
        vq.embedding.weight[0] = 0.0
    assert vq.nearest(clustered_batch(0)).unique().tolist() == [0]
    for step in range(3):
        vq(clustered_batch(step))
    torch.testing.assert_close(vq.usage[1:], torch.full((7,), 1 / 64))  # (1/8) * 0.5**3
    vq(clustered_batch(3))  # 4th call: codes 1..7 (usage 1/64 < 0.5/8) restart before quantising
    batch = clustered_batch(3).permute(0, 2, 3, 1).reshape(-1, 3)
    on_batch = [i for i in range(8) if (batch == vq.embedding.weight[i]).all(dim=1).any()]
    assert on_batch == [1, 2, 3, 4, 5, 6, 7]
    assert vq.embedding.weight[1:].unique(dim=0).shape[0] == 7  # distinct encoder outputs
    assert vq.nearest(clustered_batch(9)).unique().numel() >= 5
    vq.eval()
    state = {k: v.clone() for k, v in vq.state_dict().items()}
    vq(clustered_batch(5))  # eval mode: no bookkeeping
    assert all(torch.equal(state[k], v) for k, v in vq.state_dict().items())


def test_restart_is_bit_exact_after_resume():
    def run(vq, steps):
        for s in steps:
            vq(clustered_batch(s))

    reference = quantizer(restart_every=3, restart_threshold=0.9, usage_decay=0.5)
    run(reference, range(9))
    resumed = quantizer(restart_every=3, restart_threshold=0.9, usage_decay=0.5)
    run(resumed, range(4))
    fresh = quantizer(restart_every=3, restart_threshold=0.9, usage_decay=0.5)
    fresh.load_state_dict(resumed.state_dict())
    run(fresh, range(4, 9))
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), fresh.state_dict().values()))


def test_no_restart_state_when_disabled():
    assert list(VectorQuantizer(8, 3, restart_every=0).state_dict()) == ["embedding.weight"]
    assert set(VectorQuantizer(8, 3, restart_every=5).state_dict()) == {"embedding.weight", "usage", "calls"}

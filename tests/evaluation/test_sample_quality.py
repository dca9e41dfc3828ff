import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ldmkit.data.images import to_pil
from ldmkit.evaluation.feature_networks import EffNetFeatures, build_feature_network
from ldmkit.evaluation.frechet import gaussian_moments
from ldmkit.evaluation.reference import ReferenceStats
from ldmkit.evaluation.sample_quality import SampleFeatures, evaluate_samples, image_features, markdown_table


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    k = torch.arange(-3, 4, dtype=torch.float32)
    g = torch.exp(-k**2 / (2 * sigma**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(3, 1, 7, 7)
    return F.conv2d(F.pad(images, (3, 3, 3, 3), mode="replicate"), w, groups=3)


def test_fd_effnet_is_zero_for_identical_sets_and_grows_with_degradation(emoji32):
    network = build_feature_network("effnet")
    assert isinstance(network, EffNetFeatures) and network.input_size == 224
    x = torch.stack([emoji32[i]["image"] for i in range(0, 16 * 211, 211)])  # (16, 3, 32, 32), spread over the set
    clean = image_features(x, network, batch_size=8)
    light = image_features(blur(x, 0.5), network, batch_size=8)  # measured FD-EffNet ~24 (16 images)
    heavy = image_features(blur(x, 2.0), network, batch_size=8)  # ~220
    ref = ReferenceStats(*gaussian_moments(clean.features), clean.features.numpy(), len(clean),
                         {"network": network.key})
    same = evaluate_samples(clean, ref, network, kid_subsets=5)
    assert same["FD-EffNet"] == pytest.approx(0.0, abs=1e-6)
    assert same["precision-EffNet"] == same["recall-EffNet"] == 1.0
    fd_light = evaluate_samples(light, ref, network, kid_subsets=5)["FD-EffNet"]
    fd_heavy = evaluate_samples(heavy, ref, network, kid_subsets=5)
    assert 0 < fd_light < fd_heavy["FD-EffNet"] / 2
    assert fd_heavy["KID-EffNet"] > same["KID-EffNet"] and fd_heavy["recall-EffNet"] < 1
    # Nothing in the EffNet feature space is ever called FID, KID or IS.
    assert not {"FID", "KID", "IS", "precision", "recall"} & set(same)
    assert "NOT the FID Inception network" in same["feature_network"]


def test_images_tensors_and_pil_images_give_the_same_features(tiny_features):
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    from_tensor = image_features(x, tiny_features, batch_size=4)
    from_pil = image_features([to_pil(im) for im in x], tiny_features, batch_size=4)
    torch.testing.assert_close(from_tensor.features, from_pil.features)  # both rounded to 8 bits first


def test_every_metric_is_reported_under_its_network_label_with_notes_for_what_is_missing(tiny_features):
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(30, 3, 16, 16, generator=g) * 2 - 1, torch.rand(12, 3, 16, 16, generator=g) * 2 - 1
    out = evaluate_samples(fake, real, tiny_features, kid_subsets=3)
    expected = {"FD-Tiny", "KID-Tiny", "KID-Tiny_std", "IS-Tiny", "IS-Tiny_std", "precision-Tiny", "recall-Tiny"}
    assert expected <= set(out)
    assert out["samples"] == 12 and out["reference_images"] == 30 and out["features"] == "tiny"
    assert any("KID subsets of 12" in note for note in out["notes"])
    only_moments = ReferenceStats(np.zeros(8), np.eye(8), None, 0, None)
    samples = SampleFeatures(torch.randn(5, 8), torch.randn(5, 5), tiny_features.key)
    partial = evaluate_samples(samples, only_moments, tiny_features)
    assert "FD-Tiny" in partial and "KID-Tiny" not in partial and "IS-Tiny" not in partial
    assert len(partial["notes"]) == 2
    table = markdown_table(out)
    assert table.startswith("| metric | value |") and "| KID-Tiny | " in table and " ± " in table

import numpy as np
import pytest
from PIL import Image

from ldmkit.errors import ConfigError, DataError
from ldmkit.evaluation.reference import ReferenceStats, reference_statistics


def test_statistics_are_cached_and_recomputed_when_their_key_changes(image_folder, tiny_features, tmp_path):
    cache = tmp_path / "cache"
    first = reference_statistics(image_folder, tiny_features, resolution=16, split="all", cache_dir=cache)
    assert tiny_features.backbone.calls == 12 and first.n == 12 and first.features.shape == (12, 8)
    again = reference_statistics(image_folder, tiny_features, resolution=16, split="all", cache_dir=cache)
    assert tiny_features.backbone.calls == 12  # read from the .npz
    np.testing.assert_array_equal(again.sigma, first.sigma)
    assert again.key == first.key and again.key["network"] == tiny_features.key
    reference_statistics(image_folder, tiny_features, resolution=20, split="all", cache_dir=cache)
    assert tiny_features.backbone.calls == 24  # another resolution
    subset = reference_statistics(image_folder, tiny_features, resolution=16, split="all", n=5, cache_dir=cache)
    assert tiny_features.backbone.calls == 29 and subset.n == 5  # another n
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image_folder / "a" / "01.png")  # an edited file
    reference_statistics(image_folder, tiny_features, resolution=16, split="all", cache_dir=cache)
    assert tiny_features.backbone.calls == 41
    assert len(list((cache / "feature-stats").glob("*.npz"))) == 4


def test_the_moments_are_those_of_all_features_and_a_saved_file_round_trips(image_folder, tiny_features, tmp_path):
    stats = reference_statistics(image_folder, tiny_features, resolution=16, split="all", cache_dir=tmp_path)
    feats = stats.features.astype(np.float64)
    np.testing.assert_allclose(stats.mu, feats.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.sigma, np.cov(feats, rowvar=False), rtol=1e-5, atol=1e-9)
    stats.save(tmp_path / "ref.npz")
    loaded = reference_statistics(tmp_path / "ref.npz", tiny_features)
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    assert loaded.key == stats.key and loaded.n == 12


def test_foreign_or_mismatched_statistics_are_checked(tiny_features, tmp_path):
    np.savez(tmp_path / "pytorch_fid.npz", mu=np.zeros(8), sigma=np.eye(8))  # pytorch-fid's --save-stats keys
    foreign = reference_statistics(tmp_path / "pytorch_fid.npz", tiny_features)
    assert foreign.features is None and foreign.key is None
    np.savez(tmp_path / "wide.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(ConfigError, match="2048-d.*--features inception"):
        reference_statistics(tmp_path / "wide.npz", tiny_features)
    ReferenceStats(np.zeros(8), np.eye(8), None, 3, {"network": "effnet-224px-x"}).save(tmp_path / "other.npz")
    with pytest.raises(ConfigError, match="computed with features effnet-224px-x.*--features effnet"):
        reference_statistics(tmp_path / "other.npz", tiny_features)
    np.savez(tmp_path / "junk.npz", x=np.zeros(3))
    with pytest.raises(DataError, match="no 'mu' and 'sigma'"):
        reference_statistics(tmp_path / "junk.npz", tiny_features)
    with pytest.raises(ConfigError, match="neither 'openmoji', an image folder"):
        reference_statistics(tmp_path / "nowhere", tiny_features, resolution=16)


@pytest.mark.parametrize("name, write, message", [
    ("text.npz", lambda path: path.write_text("junk\n"), "are not a NumPy .npz archive; give a .npz of statistics"),
    ("broken.npz", lambda path: path.write_bytes(b"PK\x03\x04" + b"\x00" * 40), "are not a NumPy .npz archive"),
    ("array.npz", lambda path: np.save(open(path, "wb"), np.zeros(3)), "are a single array, not a .npz archive"),
    ("missing.npz", lambda path: None, "missing.npz do not exist; check the path")])
def test_a_file_that_is_no_statistics_archive_is_one_clear_error(tiny_features, tmp_path, name, write, message):
    write(tmp_path / name)
    with pytest.raises(DataError, match=message) as caught:
        reference_statistics(tmp_path / name, tiny_features)
    assert "allow_pickle" not in str(caught.value)  # (numpy's advice to unpickle it: never ldmkit's)


def test_a_reference_subset_is_fixed_and_bounded(image_folder, tiny_features, tmp_path):
    a = reference_statistics(image_folder, tiny_features, resolution=16, split="all", n=6, cache_dir=tmp_path / "a")
    b = reference_statistics(image_folder, tiny_features, resolution=16, split="all", n=6, cache_dir=tmp_path / "b")
    np.testing.assert_array_equal(a.features, b.features)
    with pytest.raises(ConfigError, match="must be in 2..12"):
        reference_statistics(image_folder, tiny_features, resolution=16, split="all", n=13, cache_dir=tmp_path)

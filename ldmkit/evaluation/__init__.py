"""Evaluation: reconstruction metrics of first stages, and sample-quality metrics of generated images.

Sample quality (`evaluate_samples`, `ldmkit eval`): Fréchet distance, KID, Inception Score and
improved precision/recall, in the feature space of the FID Inception-v3 ("FID", ...; needs its
weight file) or, offline by default, of ImageNet EfficientNet-Lite0 ("FD-EffNet", ...).
"""

from ldmkit.evaluation.feature_networks import FeatureNetwork, build_feature_network
from ldmkit.evaluation.reference import ReferenceStats, reference_statistics
from ldmkit.evaluation.sample_quality import SampleFeatures, evaluate_samples, image_features, sample_metrics

__all__ = ["FeatureNetwork", "build_feature_network", "ReferenceStats", "reference_statistics", "SampleFeatures",
           "evaluate_samples", "image_features", "sample_metrics"]

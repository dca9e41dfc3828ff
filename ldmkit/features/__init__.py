"""Frozen pretrained feature networks (EfficientNet-Lite0, VGG16) and the LPIPS-style perceptual distance."""

from ldmkit.features.efficientnet_lite import EfficientNetLite0, load_efficientnet_lite0
from ldmkit.features.perceptual import PerceptualConfig, PerceptualDistance, build_perceptual
from ldmkit.features.vgg16 import VGG16Features, load_vgg16_features

__all__ = ["EfficientNetLite0", "load_efficientnet_lite0", "VGG16Features", "load_vgg16_features",
           "PerceptualConfig", "PerceptualDistance", "build_perceptual"]

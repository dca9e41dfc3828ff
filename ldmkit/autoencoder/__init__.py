"""Stage 1: the autoencoder between images and latents (KL, VQ, or identity for pixel space)."""

from ldmkit.autoencoder.checkpoint import autoencoder_state, load_autoencoder, save_autoencoder
from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.autoencoder.kl import DiagonalGaussian
from ldmkit.autoencoder.loss import AutoencoderLoss, AutoencoderLossConfig, adaptive_weight
from ldmkit.autoencoder.model import (
    Autoencoder,
    AutoencoderOutput,
    IdentityFirstStage,
    KLAutoencoder,
    VQAutoencoder,
    build_autoencoder,
    empty_autoencoder,
)
from ldmkit.autoencoder.patchgan import NLayerDiscriminator
from ldmkit.autoencoder.vq import VectorQuantizer

__all__ = [
    "AutoencoderConfig", "Autoencoder", "AutoencoderOutput", "KLAutoencoder", "VQAutoencoder",
    "IdentityFirstStage", "build_autoencoder", "empty_autoencoder", "DiagonalGaussian", "VectorQuantizer",
    "AutoencoderLoss", "AutoencoderLossConfig", "adaptive_weight", "NLayerDiscriminator",
    "autoencoder_state", "save_autoencoder", "load_autoencoder",
]

"""The denoising UNet eps_theta: `unet(x_t, t, context=None, concat=None, y=None) -> prediction`."""

from ldmkit.unet.config import UNetConfig
from ldmkit.unet.inputs import UNetInputError
from ldmkit.unet.model import UNet
from ldmkit.unet.presets import UNET_PRESETS

__all__ = ["UNET_PRESETS", "UNet", "UNetConfig", "UNetInputError"]

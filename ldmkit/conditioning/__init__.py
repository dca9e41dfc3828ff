"""Conditioning: encoders tau_theta that turn labels, text, layouts or maps into UNet inputs."""

from ldmkit.conditioning.base import Conditioner, Conditioning, Unconditional, to_device
from ldmkit.conditioning.config import ConditioningConfig, build_conditioner

__all__ = ["Conditioner", "Conditioning", "Unconditional", "ConditioningConfig", "build_conditioner", "to_device"]

"""The three first stages: KL- and VQ-regularised autoencoders, and the identity (pixel space).

Common API:
    encode(x)                  KL: the posterior (DiagonalGaussian); VQ: pre-quantisation h; identity: x
    latent(x, generator=None)  what the diffusion model trains on: KL posterior sample (mode when
                               generator is None), VQ h (the quantiser is "absorbed into the decoder"),
                               identity x. No scale factor here.
    decode(z)                  VQ quantises first
    forward(x, generator=None) AutoencoderOutput for training
    downsample_factor, latent_channels, config, last_layer()
Images are (B, C, H, W) in [-1, 1] with H and W multiples of downsample_factor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ldmkit.autoencoder.config import AutoencoderConfig
from ldmkit.autoencoder.convnet import Decoder, Encoder
from ldmkit.autoencoder.kl import DiagonalGaussian
from ldmkit.autoencoder.vq import VectorQuantizer, codebook_stats
from ldmkit.errors import DataError


@dataclass
class AutoencoderOutput:
    reconstruction: torch.Tensor  # (B, C, H, W)
    regularization: torch.Tensor  # scalar: KL (per-sample sum, batch mean) or VQ codebook + commitment loss
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # detached scalars for logging
    latent: torch.Tensor | None = None  # (B, c, h, w) what the decoder decoded: KL sample, VQ codes


def check_image(x: torch.Tensor, channels: int, factor: int, what: str = "image") -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise DataError(f"{what} must be (B, {channels}, H, W), got shape {tuple(x.shape)}")
    if x.shape[2] % factor or x.shape[3] % factor:
        raise DataError(f"{what} of size {x.shape[2]}x{x.shape[3]} is not a multiple of the autoencoder's "
                        f"downsampling factor {factor}; crop or resize it to a multiple of {factor}")


class FirstStage(nn.Module):
    """Shared attributes and the encoder/decoder pair of the KL and VQ autoencoders."""

    def __init__(self, config: AutoencoderConfig, encoder_channels: int):
        super().__init__()
        self.config = config
        self.downsample_factor = config.downsample_factor
        self.latent_channels = config.latent_channels
        arch = dict(ch=config.ch, ch_mult=config.ch_mult, num_res_blocks=config.num_res_blocks,
                    attn_factors=config.attn_factors, dropout=config.dropout)
        self.encoder = Encoder(in_channels=config.in_channels, out_channels=encoder_channels, **arch)
        self.decoder = Decoder(out_channels=config.in_channels, z_channels=config.z_channels, **arch)

    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight

    def check_latent(self, z: torch.Tensor) -> None:
        check_image(z, self.latent_channels, 1, what="latent")

    def decode_continuous(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder on any latent, quantised or not (VQ: no codebook lookup; the equivariance loss)."""
        return self.decoder(self.post_quant_conv(z))


class KLAutoencoder(FirstStage):
    def __init__(self, config: AutoencoderConfig):
        super().__init__(config, encoder_channels=2 * config.z_channels)  # "double_z": mean and logvar
        self.quant_conv = nn.Conv2d(2 * config.z_channels, 2 * config.embed_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, kernel_size=1)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        check_image(x, self.config.in_channels, self.downsample_factor)
        return DiagonalGaussian(self.quant_conv(self.encoder(x)))  # moments (B, 2 * embed_dim, H/f, W/f)

    def latent(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        posterior = self.encode(x)
        return posterior.mode() if generator is None else posterior.sample(generator)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self.check_latent(z)
        return self.decode_continuous(z)  # (B, embed_dim, h, w) -> (B, C, H, W)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> AutoencoderOutput:
        """Reconstruct from a posterior sample (drawn from `generator`, torch's global RNG when None)."""
        posterior = self.encode(x)
        kl = posterior.kl().mean()
        z = posterior.sample(generator)  # (B, embed_dim, H/f, W/f)
        return AutoencoderOutput(self.decode(z), kl, {"kl": kl.detach()}, latent=z)


class VQAutoencoder(FirstStage):
    def __init__(self, config: AutoencoderConfig):
        super().__init__(config, encoder_channels=config.z_channels)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, kernel_size=1)
        self.quantize = VectorQuantizer(config.n_embed, config.embed_dim, config.beta, config.vq_restart_every,
                                        config.vq_restart_threshold, config.vq_usage_decay)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, kernel_size=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, self.config.in_channels, self.downsample_factor)
        return self.quant_conv(self.encoder(x))  # pre-quantisation h: (B, embed_dim, H/f, W/f)

    def latent(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.encode(x)  # deterministic: the generator is not needed

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self.check_latent(z)
        z_q = self.quantize.lookup(self.quantize.nearest(z))  # (B, embed_dim, h, w), the codes themselves
        return self.decode_continuous(z_q)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> AutoencoderOutput:
        z_q, loss, indices = self.quantize(self.encode(x))  # training mode: may restart dead codes first
        reconstruction = self.decode_continuous(z_q)
        return AutoencoderOutput(reconstruction, loss, codebook_stats(indices, self.config.n_embed), latent=z_q)


class IdentityFirstStage(nn.Module):
    """Pixel space: no parameters, latent = image (the paper's LDM-1 baseline)."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        self.downsample_factor = 1
        self.latent_channels = config.in_channels

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, self.latent_channels, 1)
        return x

    def latent(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        check_image(z, self.latent_channels, 1, what="latent")
        return z

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> AutoencoderOutput:
        return AutoencoderOutput(self.encode(x), x.new_zeros(()))

    def last_layer(self) -> None:
        return None


Autoencoder = KLAutoencoder | VQAutoencoder | IdentityFirstStage


def build_autoencoder(config: AutoencoderConfig) -> Autoencoder:
    return {"kl": KLAutoencoder, "vq": VQAutoencoder, "identity": IdentityFirstStage}[config.kind](config)


def empty_autoencoder(config: AutoencoderConfig) -> Autoencoder:
    """The autoencoder of `config` with its tensors allocated but not initialised, for a loader that fills every
    state-dict tensor (its buffers are all in the state dict; skipping the random initialisation saves about 1 s
    on Stable Diffusion's VAE)."""
    with torch.device("meta"):
        model = build_autoencoder(config)
    return model.to_empty(device="cpu")

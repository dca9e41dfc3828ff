"""Re-centre a KL first stage's latent space: E'(x) = E(x) - shift, D'(z) = D(z + shift).

A KL autoencoder's latent channels need not have zero mean (the main job's 3-channel KL-f4 has
channel means of -2.1, 0.2 and 3.8 against stds of 2.1-2.5), while the diffusion process assumes
zero-mean data of unit variance: one global scale factor then leaves each channel off centre by up
to 1.5 of its std. Subtracting each channel's mean is folded into the weights, so the re-centred
autoencoder is an ordinary one (it saves, exports and converts as any other):

    quant_conv:       its mean half's bias            b_mu  <- b_mu - shift
    post_quant_conv:  D(z + shift) = W (z + shift) + b    b <- b + W shift
"""

from __future__ import annotations

import torch

from ldmkit.errors import ConfigError


@torch.no_grad()
def recenter_latents(stage, shift: torch.Tensor) -> None:
    """Fold the per-channel `shift` (C,) into the KL autoencoder `stage`, in place."""
    if stage.config.kind != "kl":
        raise ConfigError(f"center_latents re-centres a KL first stage's latents; this first stage is "
                          f"'{stage.config.kind}': set center_latents: false")
    channels = stage.post_quant_conv.in_channels
    if shift.shape != (channels,):
        raise ConfigError(f"a latent shift of {tuple(shift.shape)} values for a first stage with {channels} latent "
                          "channels")
    shift = shift.to(stage.quant_conv.bias)
    stage.quant_conv.bias[:channels] -= shift  # moments = [mean (C), logvar (C)]
    stage.post_quant_conv.bias += stage.post_quant_conv.weight[:, :, 0, 0] @ shift  # (z_channels, C) @ (C,)

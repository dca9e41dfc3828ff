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


def check_recenterable(stage) -> None:
    """Only a KL first stage has the biases a shift folds into."""
    if stage.config.kind != "kl":
        raise ConfigError(f"center_latents re-centres a KL first stage's latents; this first stage is "
                          f"'{stage.config.kind}': set center_latents: false")


@torch.no_grad()
def recenter_latents(stage, shift: torch.Tensor) -> None:
    """Fold the per-channel `shift` (C,) into the KL autoencoder `stage`, in place."""
    check_recenterable(stage)
    channels = stage.post_quant_conv.in_channels
    if shift.shape != (channels,):
        raise ConfigError(f"a latent shift of {tuple(shift.shape)} values for a first stage with {channels} latent "
                          "channels")
    shift = shift.to(stage.quant_conv.bias)
    stage.quant_conv.bias[:channels] -= shift  # moments = [mean (C), logvar (C)]
    stage.post_quant_conv.bias += stage.post_quant_conv.weight[:, :, 0, 0] @ shift  # (z_channels, C) @ (C,)


@torch.no_grad()
def is_recentred_copy(original, stage) -> bool:
    """Whether `stage` is `original`, or `original` re-centred by some shift (all its other weights equal)."""
    a, b = original.state_dict(), stage.state_dict()
    folded = ("quant_conv.bias", "post_quant_conv.bias")
    if a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a if k not in folded):
        return False
    if original.config.kind != "kl":
        return all(torch.equal(a[k], b[k]) for k in folded if k in a)
    channels = stage.post_quant_conv.in_channels
    shift = a["quant_conv.bias"][:channels] - b["quant_conv.bias"][:channels]
    expected = a["post_quant_conv.bias"] + a["post_quant_conv.weight"][:, :, 0, 0] @ shift
    return torch.equal(a["quant_conv.bias"][channels:], b["quant_conv.bias"][channels:]) and torch.allclose(
        b["post_quant_conv.bias"], expected, rtol=1e-5, atol=1e-5)

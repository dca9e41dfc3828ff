"""The first stage's training objective (Rombach et al. 2022, Sec. 3.1 and App. G; Esser et al. 2021).

    L_G = L1 + perceptual + w_reg * L_reg + lambda * disc_factor * L_adv + w_eq * L_eq
    L_adv = -mean D(x_hat)                        (generator side of the hinge loss)
    lambda = disc_weight * ||grad_last L_rec|| / (||grad_last L_adv|| + 1e-4), clamped to [0, 1e4]
    L_D = disc_factor * 0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))

w_reg is kl_weight for the KL first stage and codebook_weight for VQ; disc_factor is 0 before
`disc_start` and 1 from then on. Before `disc_start` the discriminator is not evaluated at all.

L_eq (off by default, equivariance_weight = 0) is EQ-VAE's scale equivariance (Kouzelis et al. 2025): the
latent downsampled by EQUIVARIANCE_SCALE must decode to the image downsampled alike,
    L_eq = L1(s(x), D(s(z))) + perceptual(s(x), D(s(z))),   s = bilinear resize by 1/2, z the decoded latent,
which keeps high frequencies the image lacks out of the latent, so the diffusion model learns it faster.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ldmkit.autoencoder.model import AutoencoderOutput
from ldmkit.autoencoder.patchgan import DiscNorm, NLayerDiscriminator
from ldmkit.errors import ConfigError

EQUIVARIANCE_SCALE = 0.5  # L_eq's resize factor of latent and image


@dataclass(frozen=True)
class AutoencoderLossConfig:
    l1_weight: float = 1.0
    perceptual_weight: float = 1.0
    kl_weight: float = 1e-6  # times the per-sample KL sum per image element (the paper's weighting)
    codebook_weight: float = 1.0
    disc_weight: float = 0.5
    disc_start: int = 50_001  # first training step with the adversarial term
    disc_layers: int = 3
    disc_ch: int = 64
    disc_norm: DiscNorm = "group"
    disc_in_channels: int = 3
    disc_lr: float | None = None  # read by the training loop; None = the autoencoder's learning rate
    adaptive_weight_max: float = 1e4
    adaptive_weight_eps: float = 1e-4
    equivariance_weight: float = 0.0  # w_eq of L_eq (EQ-VAE's scale equivariance); 0: off

    def __post_init__(self) -> None:
        for key in ("l1_weight", "perceptual_weight", "kl_weight", "codebook_weight", "disc_weight",
                    "adaptive_weight_max", "adaptive_weight_eps", "equivariance_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"loss config key '{key}' must be >= 0, got {getattr(self, key)}")
        if self.disc_norm not in ("group", "batch"):
            raise ConfigError(f"loss config key 'disc_norm' must be 'group' or 'batch', got {self.disc_norm!r}")
        for key in ("disc_layers", "disc_in_channels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"loss config key '{key}' must be >= 1, got {getattr(self, key)}")
        if self.disc_ch < 1 or (self.disc_norm == "group" and self.disc_ch % 16):
            raise ConfigError(f"loss config key 'disc_ch' must be a positive multiple of 16 with "
                              f"disc_norm 'group' (GroupNorm(32) on 2 * disc_ch and up), got {self.disc_ch}")
        if self.disc_start < 0:
            raise ConfigError(f"loss config key 'disc_start' must be >= 0, got {self.disc_start}")
        if self.disc_lr is not None and self.disc_lr <= 0:
            raise ConfigError(f"loss config key 'disc_lr' must be > 0 or null, got {self.disc_lr}")


def adaptive_weight(nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, eps: float = 1e-4,
                    max_weight: float = 1e4) -> torch.Tensor:
    """||grad_last nll|| / (||grad_last g_loss|| + eps), clamped to [0, max_weight] and detached."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (nll_grad.norm() / (g_grad.norm() + eps)).clamp(0.0, max_weight).detach()


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Build the graph without parameter gradients for `module` (its inputs still get theirs)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class AutoencoderLoss(nn.Module):
    """Reconstruction + regulariser + adaptive-weighted PatchGAN loss; owns the discriminator.

    `perceptual` maps two (B, 3, H, W) images in [-1, 1] to a (B,) distance; it is kept frozen and
    in eval mode. It may be None only when perceptual_weight is 0. The training loop optimises
    `self.discriminator.parameters()` with `discriminator_loss`, only while `adversarial_active(step)`.
    """

    def __init__(self, config: AutoencoderLossConfig, perceptual: nn.Module | None,
                 kind: Literal["kl", "vq", "identity"]):
        super().__init__()
        if perceptual is None and config.perceptual_weight > 0:
            raise ConfigError("loss config key 'perceptual_weight' is > 0 but no perceptual network was given; "
                              "pass one or set perceptual_weight to 0")
        self.config = config
        self.kind = kind
        self.reg_weight = {"kl": config.kl_weight, "vq": config.codebook_weight, "identity": 0.0}[kind]
        self.perceptual = perceptual.eval().requires_grad_(False) if perceptual is not None else None
        self.discriminator = NLayerDiscriminator(config.disc_in_channels, config.disc_ch, config.disc_layers,
                                                 config.disc_norm)

    def train(self, mode: bool = True) -> AutoencoderLoss:
        super().train(mode)
        if self.perceptual is not None:
            self.perceptual.eval()  # a fixed metric: no dropout, no batch statistics
        return self

    def adversarial_active(self, step: int) -> bool:
        return step >= self.config.disc_start

    def reconstruction_loss(self, x: torch.Tensor, x_rec: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """l1_weight * mean|x - x_rec| + perceptual_weight * mean perceptual(x, x_rec)."""
        cfg = self.config
        l1 = (x - x_rec).abs().mean()
        nll = cfg.l1_weight * l1
        logs = {"l1": l1.detach()}
        if cfg.perceptual_weight > 0:
            p = self.perceptual(x, x_rec).mean()
            nll = nll + cfg.perceptual_weight * p
            logs["perceptual"] = p.detach()
        return nll, logs

    def equivariance_loss(self, x: torch.Tensor, latent: torch.Tensor,
                          decode: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """L_eq: the reconstruction loss of the resized latent's decoding against the resized image."""
        def resize(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, scale_factor=EQUIVARIANCE_SCALE, mode="bilinear", antialias=True)

        nll, _ = self.reconstruction_loss(resize(x), decode(resize(latent)))  # (B, 3, H/2, W/2) images
        return nll

    def generator_loss(self, x: torch.Tensor, out: AutoencoderOutput, step: int, last_layer: torch.Tensor | None,
                       decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total autoencoder loss and detached logs. Needs grad mode for the adaptive weight.

        The discriminator runs with its parameters frozen, so this loss sends no gradient into it.
        Under torch.no_grad (validation) or without a last layer, the adversarial weight is 0. L_eq needs
        `decode` (the model's decode_continuous) and out.latent; without them it is left out.
        """
        nll, logs = self.reconstruction_loss(x, out.reconstruction)
        # The KL is a per-sample sum; the paper's code weighs it against reconstruction terms summed over
        # pixels, ours are pixel means, so divide by the image's element count: kl_weight means what it
        # means in the paper (~1e-6) at every resolution. VQ codebook losses are means in both codes.
        reg = out.regularization / x[0].numel() if self.kind == "kl" else out.regularization
        loss = nll + self.reg_weight * reg
        logs.update(nll=nll.detach(), reg=out.regularization.detach())
        if self.config.equivariance_weight > 0 and decode is not None and out.latent is not None:
            eq = self.equivariance_loss(x, out.latent, decode)
            loss = loss + self.config.equivariance_weight * eq
            logs["equivariance"] = eq.detach()
        if self.adversarial_active(step):
            with frozen(self.discriminator):
                g_loss = -self.discriminator(out.reconstruction).mean()
            if last_layer is not None and torch.is_grad_enabled():
                d_weight = self.config.disc_weight * adaptive_weight(
                    nll, g_loss, last_layer, self.config.adaptive_weight_eps, self.config.adaptive_weight_max)
            else:
                d_weight = torch.zeros((), device=x.device)
            loss = loss + d_weight * g_loss  # disc_factor = 1 from disc_start on
            logs.update(g_loss=g_loss.detach(), d_weight=d_weight)
        logs.update(out.stats)
        logs["loss"] = loss.detach()
        return loss, logs

    def discriminator_loss(self, x: torch.Tensor, reconstruction: torch.Tensor,
                           step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Hinge loss on real x and the detached reconstruction; a constant 0 before disc_start."""
        if not self.adversarial_active(step):
            zero = torch.zeros((), device=x.device)
            return zero, {"d_loss": zero}
        logits_real = self.discriminator(x.detach())
        logits_fake = self.discriminator(reconstruction.detach())
        d_loss = hinge_d_loss(logits_real, logits_fake)
        return d_loss, {"d_loss": d_loss.detach(), "logits_real": logits_real.detach().mean(),
                        "logits_fake": logits_fake.detach().mean()}

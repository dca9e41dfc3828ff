"""Which condition a latent diffusion model reads, and the one factory that builds its encoder.

`kind` picks the task; the section of the same name configures its encoder:

    none      unconditional
    class     class_label: a learned class embedding as one context token (the paper's ImageNet LDM)
    text      text: BERT WordPiece + a transformer trained with the UNet (the paper's LAION model),
              or a frozen pretrained encoder (MiniLM; CLIP for Stable Diffusion checkpoints)
    layout    layout: boxes with class labels as tokens (class token + quantised coordinates)
    semantic  semantic: a label map, downsampled to the latent size and concatenated
    low_res   low_res: a low-resolution image concatenated (super-resolution)
    inpaint   inpaint: the encoded masked image and the mask concatenated

`hybrid` adds a second, concatenated condition to a context kind (CompVis' conditioning_key
"hybrid"): e.g. kind "text" with hybrid "low_res" reads {"text": captions, "low_res": images}.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from ldmkit.conditioning.base import Conditioner, Unconditional
from ldmkit.conditioning.sections import (
    ClassConfig,
    InpaintConfig,
    LayoutConfig,
    LowResConfig,
    SemanticConfig,
    TextConfig,
)

Kind = Literal["none", "class", "text", "layout", "semantic", "low_res", "inpaint"]
ConcatKind = Literal["none", "semantic", "low_res", "inpaint"]


@dataclass(frozen=True)
class ConditioningConfig:
    kind: Kind = "none"
    drop_prob: float = 0.1  # share of training samples whose condition is replaced by the null one
    trainable: bool = True  # tau_theta trained jointly with the UNet (the paper's Eq. 3), else frozen
    class_label: ClassConfig = field(default_factory=ClassConfig)
    text: TextConfig = field(default_factory=TextConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    low_res: LowResConfig = field(default_factory=LowResConfig)
    inpaint: InpaintConfig = field(default_factory=InpaintConfig)
    hybrid: ConcatKind = "none"  # a concatenated condition used together with a context kind (see above)

    def __post_init__(self):
        if not 0.0 <= self.drop_prob < 1.0:
            raise ValueError(f"conditioning.drop_prob must be in [0, 1), got {self.drop_prob}")
        if self.hybrid != "none" and self.kind not in ("class", "text", "layout"):
            raise ValueError(f"conditioning.hybrid adds a concatenated condition to a context kind (class, text, "
                             f"layout), but kind is {self.kind!r}; set hybrid: none or pick a context kind")

    def concat_channels(self, latent_channels: int) -> int:
        """Channels the conditioner concatenates to z_t (so unet.in_channels = latent + this)."""
        section = self.section()
        own = section.concat_channels(latent_channels) if hasattr(section, "concat_channels") else 0
        return own + (getattr(self, self.hybrid).concat_channels(latent_channels) if self.hybrid != "none" else 0)

    def section(self):
        """The config section of the chosen kind (None for 'none')."""
        return None if self.kind == "none" else getattr(self, "class_label" if self.kind == "class" else self.kind)


def build_conditioner(cfg: ConditioningConfig) -> Conditioner:
    """The encoder for `cfg.kind`, frozen when `cfg.trainable` is false."""
    if cfg.kind == "none":
        conditioner = Unconditional()
    elif cfg.kind == "class":
        from ldmkit.conditioning.class_embedder import build

        conditioner = build(cfg)
    elif cfg.kind == "text":
        from ldmkit.conditioning.text import build

        conditioner = build(cfg)
    elif cfg.kind == "layout":
        from ldmkit.conditioning.layout import build

        conditioner = build(cfg)
    else:  # semantic, low_res, inpaint: maps concatenated to z_t
        from ldmkit.conditioning.concat import build

        conditioner = build(cfg)
    if cfg.hybrid != "none":
        from ldmkit.conditioning.hybrid import Hybrid

        conditioner = Hybrid({cfg.kind: conditioner, cfg.hybrid: build_conditioner(replace(cfg, kind=cfg.hybrid,
                                                                                           hybrid="none"))})
    if not cfg.trainable:
        conditioner.requires_grad_(False)
    return conditioner

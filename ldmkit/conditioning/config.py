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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ldmkit.conditioning.base import Conditioner, Unconditional
from ldmkit.conditioning.class_embedder import ClassEmbedder
from ldmkit.conditioning.clip_text import ClipText
from ldmkit.conditioning.concat import InpaintConditioner, LowResConditioner
from ldmkit.conditioning.hybrid import Hybrid
from ldmkit.conditioning.layout import LayoutEncoder
from ldmkit.conditioning.sections import (
    ClassConfig,
    InpaintConfig,
    LayoutConfig,
    LowResConfig,
    SemanticConfig,
    TextConfig,
)
from ldmkit.conditioning.semantic import SemanticMap
from ldmkit.conditioning.text import BertText, MiniLMText

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

    @property
    def uses_clip(self) -> bool:
        """Whether the text is read by a frozen CLIP text encoder, from a folder of its own."""
        return self.kind == "text" and self.text.encoder == "clip"

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of condition the model reads: (), (kind,), or (kind, hybrid)."""
        return tuple(k for k in (self.kind, self.hybrid) if k != "none")


def build_conditioner(cfg: ConditioningConfig, empty_clip: bool = False) -> Conditioner:
    """The encoder for `cfg.kind` (plus the `hybrid` part), frozen when `cfg.trainable` is false. `empty_clip`: a
    CLIP text encoder is made with its weights neither read nor initialised, for a loader that fills every tensor
    of the model (random initialisation costs about 1.5 s on Stable Diffusion's)."""
    conditioner = _build(cfg.kind, cfg, empty_clip)
    if cfg.hybrid != "none":
        conditioner = Hybrid({cfg.kind: conditioner, cfg.hybrid: _build(cfg.hybrid, cfg, empty_clip)})
    if not cfg.trainable:
        conditioner.requires_grad_(False)
    return conditioner


def _build(kind: str, cfg: ConditioningConfig, empty_clip: bool) -> Conditioner:
    if kind == "text" and cfg.text.encoder == "clip":
        return ClipText(cfg.text, read_weights=not empty_clip)
    return BUILDERS[kind](cfg)


TEXT_ENCODERS: dict[str, Callable[[TextConfig], Conditioner]] = {"bert": BertText, "minilm": MiniLMText,
                                                                 "clip": ClipText}
BUILDERS: dict[str, Callable[[ConditioningConfig], Conditioner]] = {
    "none": lambda cfg: Unconditional(),
    "class": lambda cfg: ClassEmbedder(cfg.class_label),
    "text": lambda cfg: TEXT_ENCODERS[cfg.text.encoder](cfg.text),
    "layout": lambda cfg: LayoutEncoder(cfg.layout),
    "semantic": lambda cfg: SemanticMap(cfg.semantic),
    "low_res": lambda cfg: LowResConditioner(cfg.low_res),
    "inpaint": lambda cfg: InpaintConditioner(cfg.inpaint),
}

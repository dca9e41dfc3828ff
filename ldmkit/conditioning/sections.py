"""The per-task sections of ConditioningConfig: each one configures one conditioning encoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ldmkit.errors import ConfigError


@dataclass(frozen=True)
class ClassConfig:
    num_classes: int = 10  # labels 0 .. num_classes - 1
    embed_dim: int = 512  # width of the context token (= unet.context_dim)
    # Row of the unconditional ("null") class used for classifier-free guidance. null (default):
    # num_classes, an extra learned row. A smaller index makes that class the null one without an
    # extra row (CompVis checkpoints: the last of n_classes rows, e.g. 1000 of 1001).
    null_index: int | None = None
    names: tuple[str, ...] = ()  # class names, so that sampling can ask for a class by name (filled by training)
    # Where the class enters the UNet. cross_attention: one context token (the paper's ClassEmbedder);
    # timestep: a learned vector added to the timestep embedding, so every ResBlock reads it (ADM's
    # class conditioning, diffusers' num_class_embeds): the table is the UNet's label_emb, which needs
    # unet.num_classes = the rows (classes + null row), and embed_dim is unused.
    injection: Literal["cross_attention", "timestep"] = "cross_attention"

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(self.names))
        if self.injection not in ("cross_attention", "timestep"):
            raise ConfigError(f"conditioning.class_label.injection {self.injection!r} is unknown; use "
                              "cross_attention (a context token) or timestep (added to the timestep embedding)")
        if self.names and len(self.names) != self.num_classes:
            raise ConfigError(f"conditioning.class_label.names has {len(self.names)} names for "
                              f"{self.num_classes} classes; give one per class or none")
        if self.num_classes < 1:
            raise ConfigError(f"conditioning.class_label.num_classes must be >= 1, got {self.num_classes}")
        if self.embed_dim < 1:
            raise ConfigError(f"conditioning.class_label.embed_dim must be >= 1, got {self.embed_dim}")
        if self.null_index is not None and not 0 <= self.null_index <= self.num_classes:
            raise ConfigError(f"conditioning.class_label.null_index must be in [0, {self.num_classes}] "
                              f"(num_classes = the extra null row), got {self.null_index}")

    @property
    def null_label(self) -> int:
        return self.num_classes if self.null_index is None else self.null_index

    @property
    def rows(self) -> int:
        """Rows of the embedding table: the classes, plus the null row when it is an extra one."""
        return max(self.num_classes, self.null_label + 1)


TEXT_ENCODERS = ("bert", "minilm", "clip")


@dataclass(frozen=True)
class TextConfig:
    # "bert": BERT WordPiece + a transformer trained with the UNet (the paper's LAION model);
    # "minilm": the frozen pretrained all-MiniLM-L6-v2 (+ a trained Linear when embed_dim != 384);
    # "clip": a frozen CLIP text model (Stable Diffusion v1), needs the optional `transformers`.
    encoder: str = "bert"
    embed_dim: int = 512  # width of the context tokens (= unet.context_dim)
    max_tokens: int = 77  # every caption is padded / truncated to this many tokens
    layers: int = 4  # "bert": transformer depth (attention + feed-forward pairs)
    vocab_path: str | None = None  # bert/minilm: a WordPiece vocab.txt; clip: a tokenizer folder (null: see below)
    weights_path: str | None = None  # minilm: model.safetensors; clip: a CLIP (text) model folder

    def __post_init__(self):
        if self.encoder not in TEXT_ENCODERS:
            raise ConfigError(f"conditioning.text.encoder must be one of {', '.join(TEXT_ENCODERS)}, "
                              f"got {self.encoder!r}")
        for key in ("embed_dim", "layers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"conditioning.text.{key} must be >= 1, got {getattr(self, key)}")
        if self.max_tokens < 2:
            raise ConfigError(f"conditioning.text.max_tokens must be >= 2 (start and end tokens), "
                              f"got {self.max_tokens}")
        if self.encoder == "clip" and self.weights_path is None:
            raise ConfigError("conditioning.text.weights_path: the clip encoder needs a local CLIP model folder "
                              "(config.json and tokenizer files, e.g. a copy of openai/clip-vit-large-patch14)")


@dataclass(frozen=True)
class LayoutConfig:
    """Boxes as tokens (class, x0, y0, x1, y1) through a transformer trained with the UNet (layout.py)."""

    num_classes: int = 10  # box labels 0 .. num_classes - 1
    embed_dim: int = 512  # width of the transformer and of its context tokens (= unet.context_dim)
    max_boxes: int = 8  # boxes per layout; context = max_boxes * 5 tokens (>= data.max_boxes)
    coord_bins: int = 32  # each normalised coordinate is quantised to this many bins
    layers: int = 4  # transformer depth (attention + feed-forward pairs, as the text transformer)

    def __post_init__(self):
        for key in ("num_classes", "embed_dim", "max_boxes", "coord_bins", "layers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"conditioning.layout.{key} must be >= 1, got {getattr(self, key)}")


@dataclass(frozen=True)
class SemanticConfig:
    """A label map, one-hot and area-averaged to the latent size, concatenated to z_t (semantic.py)."""

    num_classes: int = 11  # label-map ids 0 .. num_classes - 1, background included
    factor: int = 4  # the first stage's downsampling factor f: an (H, W) map becomes (num_classes, H/f, W/f)

    def __post_init__(self):
        for key in ("num_classes", "factor"):
            if getattr(self, key) < 1:
                raise ConfigError(f"conditioning.semantic.{key} must be >= 1, got {getattr(self, key)}")

    def concat_channels(self, latent_channels: int) -> int:
        return self.num_classes


@dataclass(frozen=True)
class LowResConfig:
    factor: int = 4  # super-resolution factor: training derives the condition by this downsampling
    channels: int = 3  # channels of the condition image
    # The condition is resized `stages` times by `multiplier` (CompVis' SpatialRescaler) to reach the
    # latent's size; 0 stages: it has that size already (factor = the first stage's f).
    stages: int = 0
    method: str = "bilinear"  # F.interpolate mode: nearest, linear, bilinear, bicubic, trilinear, area
    multiplier: float = 0.5
    out_channels: int | None = None  # a 1x1 conv maps channels -> out_channels (null: concatenated as is)
    bias: bool = False  # of that 1x1 conv
    # How training derives the LR image from each HR image (ldmkit/data/degradations.py): "bicubic"
    # (the paper's LDM-SR) or "bsr", a random mix of blur, resizing, noise and JPEG (LDM-BSR).
    degradation: Literal["bicubic", "bsr"] = "bicubic"

    def __post_init__(self):
        for key in ("factor", "channels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"conditioning.low_res.{key} must be >= 1, got {getattr(self, key)}")
        if self.stages < 0:
            raise ConfigError(f"conditioning.low_res.stages must be >= 0, got {self.stages}")
        if self.method not in ("nearest", "linear", "bilinear", "bicubic", "trilinear", "area"):
            raise ConfigError(f"conditioning.low_res.method must be an F.interpolate mode (nearest, bilinear, "
                              f"bicubic, area, ...), got {self.method!r}")
        if self.multiplier <= 0:
            raise ConfigError(f"conditioning.low_res.multiplier must be positive, got {self.multiplier}")
        if self.out_channels is not None and self.out_channels < 1:
            raise ConfigError(f"conditioning.low_res.out_channels must be >= 1 or null, got {self.out_channels}")

    def concat_channels(self, latent_channels: int) -> int:
        return self.out_channels or self.channels


@dataclass(frozen=True)
class MaskConfig:
    """The training masks of an inpainting model (drawn by ldmkit/data/masks.py, LaMa's "large masks")."""

    stroke_prob: float = 0.7  # share of masks made of strokes; the others are boxes
    strokes: tuple[int, int] = (1, 5)  # strokes per mask (LaMa large: 1-5)
    segments: tuple[int, int] = (1, 5)  # segments per stroke
    segment_length: tuple[float, float] = (10 / 256, 210 / 256)  # fraction of the image side
    stroke_width: tuple[float, float] = (5 / 256, 105 / 256)  # fraction of the image side
    boxes: tuple[int, int] = (1, 4)  # boxes per mask (LaMa large: 1-4)
    box_size: tuple[float, float] = (30 / 256, 150 / 256)  # side of a box, fraction of the image side
    margin: float = 10 / 256  # boxes keep this far from the border
    min_coverage: float = 0.02  # redraw masks with a smaller hole ...
    max_coverage: float = 0.6  # ... or a larger one
    max_tries: int = 20  # redraws before the last draw is kept as it is

    def __post_init__(self):
        for key in ("strokes", "segments", "segment_length", "stroke_width", "boxes", "box_size"):
            object.__setattr__(self, key, tuple(getattr(self, key)))  # lists from Python callers
            value = getattr(self, key)
            if len(value) != 2 or not 0 <= value[0] <= value[1]:
                raise ConfigError(f"inpaint mask setting '{key}' must be a range [low, high] with 0 <= low <= high, "
                                  f"got {value}")
        if not 0.0 <= self.stroke_prob <= 1.0:
            raise ConfigError(f"inpaint mask setting 'stroke_prob' must be in [0, 1], got {self.stroke_prob}")
        if not 0.0 <= self.min_coverage < self.max_coverage <= 1.0:
            raise ConfigError(f"inpaint mask coverage range [{self.min_coverage}, {self.max_coverage}] must satisfy "
                              "0 <= min_coverage < max_coverage <= 1")
        if self.max_tries < 1:
            raise ConfigError(f"inpaint mask setting 'max_tries' must be at least 1, got {self.max_tries}")


@dataclass(frozen=True)
class InpaintConfig:
    # Training masks, drawn per sample (ldmkit/data/masks.py): LaMa-style thick strokes and boxes.
    masks: MaskConfig = field(default_factory=MaskConfig)
    # How the mask is brought to the latent size: "max" (a latent pixel is a hole if any of its
    # pixels is), "area" (the hole's share), "nearest" (CompVis' inpainting model).
    mask_resize: Literal["max", "area", "nearest"] = "max"

    def concat_channels(self, latent_channels: int) -> int:
        return latent_channels + 1  # encoded masked image + the mask

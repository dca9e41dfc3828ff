"""The native endpoints' request bodies and the server's limits, checked by pydantic before any work.

Field names follow the CLI's options (`ldmkit sample --prompt ... --class ...`, `ldmkit upscale`,
`ldmkit inpaint`); images travel as base64 (a data: URL prefix is allowed). Bodies are strict:
an unknown field or a value of the wrong type is a 422 that names it. Limits that depend on the
server's flags (pixels, upload bytes, images per request) are checked in tasks.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ldmkit.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS

MAX_STEPS = 1000
MAX_SEED = 2**63 - 2**20  # seed + i must stay a valid torch seed
MAX_SIDE = 16384
MAX_TEXT = 2000

Text = Annotated[str, Field(max_length=MAX_TEXT)]
ClassValue = Annotated[int, Field(ge=0)] | Annotated[str, Field(max_length=200)]
Image64 = Annotated[str, Field(min_length=1, description="an image file in base64 (or a data: URL)")]
Coordinate = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Sigma = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # a noise level (finite: JSON has no infinity)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (`ldmkit serve --max-pixels ...`)."""

    max_pixels: int = 1024 * 1024  # per image, uploaded or generated
    max_upload_bytes: int = 16 << 20  # per uploaded image
    max_images: int = 16  # per request
    queue_size: int = 16  # jobs waiting (not running)
    preview_every: int = 5  # steps between decoded previews (0: none)

    @property
    def max_body(self) -> int:
        """Bytes per request body: room for three uploads in base64 plus the rest."""
        return self.max_upload_bytes * 4 + (1 << 20)


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())

    model: str | None = Field(None, max_length=200, description="a served model's name (GET /ldmkit/v1/models); "
                                                                "default: the first one served that does the task")
    steps: int = Field(DEFAULT_STEPS, ge=1, le=MAX_STEPS)
    sampler: Literal[tuple(SAMPLERS)] = DEFAULT_SAMPLER
    eta: float | None = Field(None, allow_inf_nan=False)  # >= 0, ddim <= 1: checked with the sampler (Pipeline.check)
    guidance: float = Field(1.0, ge=0, le=100, allow_inf_nan=False, description="classifier-free guidance (1: off)")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="image i gets seed + i")


class Layout(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    boxes: list[Annotated[list[Coordinate], Field(min_length=4, max_length=4)]] = Field(
        max_length=64, description="normalised corners [x0, y0, x1, y1]")
    labels: list[Annotated[int, Field(ge=0)]] = Field(max_length=64, description="one class index per box")


class GenerateRequest(Sampling):
    """`ldmkit sample`: any model that generates (unconditional, class, text, layout, semantic)."""

    n: int = Field(1, ge=1, le=1024)
    batch_size: int = Field(8, ge=1, le=64)
    height: int | None = Field(None, ge=1, le=MAX_SIDE)
    width: int | None = Field(None, ge=1, le=MAX_SIDE)
    prompt: Text | Annotated[list[Text], Field(min_length=1, max_length=64)] | None = None
    class_: ClassValue | Annotated[list[ClassValue], Field(min_length=1, max_length=64)] | None = Field(
        None, alias="class")
    layout: Layout | Annotated[list[Layout], Field(min_length=1, max_length=64)] | None = None
    label_map: Image64 | None = Field(None, description="a single-channel PNG of class ids, base64")
    negative_prompt: Text | None = None
    negative_class: ClassValue | None = None
    init_image: Image64 | None = None
    strength: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    mask: Image64 | None = Field(None, description="with init_image: white = change")
    karras: bool = False
    guidance_interval: Annotated[list[Sigma], Field(min_length=2, max_length=2)] | None = Field(
        None, description="[low, high]: guide only at noise levels sigma in (low, high] (`--guidance-interval`)")
    cache_interval: int | None = Field(None, ge=1, le=MAX_STEPS, description="reuse the UNet's deep features "
                                       "between steps, the whole UNet every k-th call (`--cache-interval`)")


class UpscaleRequest(Sampling):
    """`ldmkit upscale`: a super-resolution model."""

    image: Image64
    tile: int = Field(64, ge=1, le=4096, description="tile side in LR pixels, a multiple of what the model takes")
    overlap: int | None = Field(None, ge=0, le=4096, description="less than the tile; default: a quarter of it")
    color_fix: bool = True


class InpaintRequest(Sampling):
    """`ldmkit inpaint`: an inpainting model; white in the mask = fill."""

    image: Image64
    mask: Image64

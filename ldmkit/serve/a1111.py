"""AUTOMATIC1111's web-UI API, the part clients use: its request fields, sampler names and answers.

Field names and response shapes follow A1111's modules/api/models.py (StableDiffusionProcessing
Txt2Img / Img2Img, TextToImageResponse, ProgressResponse, SamplerItem, SDModelItem). Like A1111,
these bodies are lenient: null means "the default", and fields this server has no use for
(restore_faces, enable_hr, styles, ...) are accepted and listed in the answer's info as "ignored".
So is a cfg_scale sent to an unconditional model, since most clients send one (only fields the
client sent are listed, never a default it left out). The prompt is the caption of a text model
and the class (name or index) of a class model; a model that takes neither refuses a non-empty
prompt. Layout and semantic models need the native endpoints.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ldmkit.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS, sampler_options
from ldmkit.serve.errors import ApiError
from ldmkit.serve.images import png_base64
from ldmkit.serve.registry import ServedModel
from ldmkit.serve.schemas import MAX_SEED, MAX_SIDE, MAX_STEPS, MAX_TEXT
from ldmkit.version import __version__

# A1111 name -> (ldmkit sampler, Karras noise levels, A1111's aliases)
SAMPLERS = {
    "DPM++ 2M": ("dpmpp_2m", False, ("k_dpmpp_2m",)),
    "DPM++ 2M Karras": ("dpmpp_2m", True, ("k_dpmpp_2m_ka",)),
    "Euler a": ("euler_a", False, ("k_euler_a", "k_euler_ancestral")),
    "Euler": ("euler", False, ("k_euler",)),
    "Heun": ("heun", False, ("k_heun",)),
    "DDIM": ("ddim", False, ()),
    "PLMS": ("plms", False, ()),
    "DDPM": ("ddpm", False, ()),  # not an A1111 sampler: ldmkit's ancestral DDPM
}
# ldmkit's default sampler (not A1111's "Euler"): the best trade-off measured (docs/results/RECIPE.md)
DEFAULT_LABEL = next(label for label, (sampler, karras, _) in SAMPLERS.items()
                     if sampler == DEFAULT_SAMPLER and not karras)
SCHEDULERS = {"automatic": "Automatic", "karras": "Karras"}
DEFAULTLESS = (None, "", 0, False, [], {}, -1)  # values of fields we ignore that need no mention


class Txt2ImgRequest(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    prompt: str = Field("", max_length=MAX_TEXT)
    negative_prompt: str = Field("", max_length=MAX_TEXT)
    seed: int = Field(-1, ge=-1, le=MAX_SEED, description="-1: a random seed")
    steps: int = Field(DEFAULT_STEPS, ge=1, le=MAX_STEPS)
    cfg_scale: float = Field(7.0, ge=0, le=100, allow_inf_nan=False)
    width: int | None = Field(None, ge=1, le=MAX_SIDE, description="default: the model's training size")
    height: int | None = Field(None, ge=1, le=MAX_SIDE)
    sampler_name: str | None = Field(None, max_length=100)
    sampler_index: str | None = Field(None, max_length=100)
    scheduler: str | None = Field(None, max_length=100)
    batch_size: int = Field(1, ge=1, le=64)
    n_iter: int = Field(1, ge=1, le=1024)
    eta: float | None = Field(None, allow_inf_nan=False)  # >= 0, ddim <= 1: checked with the sampler (Pipeline.check)
    override_settings: dict[str, Any] = Field(default_factory=dict)
    send_images: bool = True

    @model_validator(mode="before")
    @classmethod
    def nulls_are_defaults(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data

    def ignored(self) -> list[str]:
        """The fields sent with a value that this server does not act on."""
        extra = [k for k, v in (self.model_extra or {}).items() if v not in DEFAULTLESS]
        extra += [f"override_settings.{k}" for k in self.override_settings if k != "sd_model_checkpoint"]
        return sorted(extra)


class Img2ImgRequest(Txt2ImgRequest):
    init_images: list[str] = Field(min_length=1, max_length=16)
    denoising_strength: float = Field(0.75, ge=0, le=1, allow_inf_nan=False)
    mask: str | None = None
    inpainting_mask_invert: int = Field(0, ge=0, le=1)
    include_init_images: bool = False


def resolve_sampler(name: str | None, scheduler: str | None) -> tuple[str, bool, str]:
    """(ldmkit sampler, karras, A1111 name) for A1111's sampler name (or alias, or ldmkit name) and scheduler."""
    key = (name or DEFAULT_LABEL).strip().lower()
    for label, (sampler, karras, aliases) in SAMPLERS.items():
        if key in (label.lower(), *aliases) or (not karras and key == sampler):
            break
    else:
        raise ApiError(422, f"sampler {name!r} is not available here; choose one of: {', '.join(SAMPLERS)}")
    schedule = (scheduler or "automatic").strip().lower()
    if schedule not in SCHEDULERS:
        raise ApiError(422, f"scheduler {scheduler!r} is not available here; choose one of: "
                            f"{', '.join(SCHEDULERS.values())}")
    karras = karras or schedule == "karras"
    if karras and "karras" not in sampler_options(sampler):
        takers = [label for label, (s, k, _) in SAMPLERS.items() if not k and "karras" in sampler_options(s)]
        raise ApiError(422, f"the Karras schedule is for {', '.join(takers)}, not {label}")
    return sampler, karras, label


def sampler_items() -> list[dict]:
    """GET /sdapi/v1/samplers."""
    return [{"name": label, "aliases": list(aliases) + ([] if karras else [sampler]),
             "options": {"scheduler": "karras"} if karras else {}}
            for label, (sampler, karras, aliases) in SAMPLERS.items()]


def scheduler_items() -> list[dict]:
    """GET /sdapi/v1/schedulers."""
    return [{"name": name, "label": label, "aliases": None, "default_rho": 7.0 if name == "karras" else -1,
             "need_inner_model": False} for name, label in SCHEDULERS.items()]


def model_item(model: ServedModel) -> dict:
    """One entry of GET /sdapi/v1/sd-models (the file's name, not its path)."""
    return {"title": model.title, "model_name": model.name, "hash": model.short_hash, "sha256": model.sha256,
            "filename": model.pipe.source.rsplit("/", 1)[-1], "config": None}


def conditions_of(model: ServedModel, prompt: str, negative: str) -> tuple[Any, Any]:
    """(condition, negative condition) from A1111's prompt and negative prompt."""
    cfg = model.conditioning
    if cfg.kind == "text" and cfg.hybrid == "none":
        return prompt, negative or None
    if cfg.kind == "class" and cfg.hybrid == "none":
        return prompt.strip() or None, negative.strip() or None
    if cfg.kind in ("none", "inpaint"):
        if prompt.strip() or negative.strip():
            what = "an unconditional model" if cfg.kind == "none" else "an inpainting model"
            raise ApiError(422, f"model {model.name!r} is {what}: it takes no prompt; send an empty prompt")
        return None, None
    raise ApiError(422, f"model {model.name!r} takes a {' and a '.join(cfg.kinds)} condition, which A1111's "
                        "fields cannot carry; use POST /ldmkit/v1/generate")


def response(req: Txt2ImgRequest, model: ServedModel, images: list, label: str, karras: bool, guidance: float,
             strength: float | None, ignored: list[str]) -> dict:
    """A1111's TextToImageResponse / ImageToImageResponse: base64 PNGs, the request, and info as a JSON string."""
    params = [json.loads(image.info["ldmkit"]) for image in images]
    seeds = [p["seed"] for p in params]
    n, first = len(images), params[0] if params else {"width": req.width, "height": req.height}
    infotexts = [infotext(req, model, p, label, karras, guidance, strength) for p in params]
    info = {"prompt": req.prompt, "all_prompts": [req.prompt] * n, "negative_prompt": req.negative_prompt,
            "all_negative_prompts": [req.negative_prompt] * n, "seed": seeds[0] if seeds else req.seed,
            "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * n, "subseed_strength": 0,
            "width": first["width"], "height": first["height"],
            "sampler_name": label, "scheduler": "Karras" if karras else "Automatic", "cfg_scale": guidance,
            "steps": req.steps, "batch_size": req.batch_size, "restore_faces": False, "sd_model_name": model.name,
            "sd_model_hash": model.short_hash, "denoising_strength": strength, "index_of_first_image": 0,
            "infotexts": infotexts, "styles": [], "job_timestamp": time.strftime("%Y%m%d%H%M%S"), "clip_skip": 1,
            "is_using_inpainting_conditioning": model.task == "inpaint", "version": f"ldmkit {__version__}",
            "extra_generation_params": {}, "ignored": ignored}
    exclude = set() if getattr(req, "include_init_images", True) else {"init_images", "mask"}
    encoded = [png_base64(image, {"parameters": text}) for image, text in zip(images, infotexts)]
    return {"images": encoded if req.send_images else [], "parameters": req.model_dump(exclude=exclude),
            "info": json.dumps(info)}


def infotext(req: Txt2ImgRequest, model: ServedModel, params: dict, label: str, karras: bool, guidance: float,
             strength: float | None) -> str:
    """A1111's "parameters" text for one image (what its clients show and parse)."""
    lines = [req.prompt] + ([f"Negative prompt: {req.negative_prompt}"] if req.negative_prompt else [])
    fields = {"Steps": req.steps, "Sampler": label, "Schedule type": "Karras" if karras else None,
              "CFG scale": guidance, "Seed": params["seed"], "Size": f"{params['width']}x{params['height']}",
              "Model hash": model.short_hash, "Model": model.name, "Denoising strength": strength,
              "Version": f"ldmkit {__version__}"}
    lines.append(", ".join(f"{k}: {v}" for k, v in fields.items() if v is not None))
    return "\n".join(lines)

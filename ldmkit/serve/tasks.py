"""Checked requests -> the work a job runs: `work(callback) -> [PIL images carrying their parameters]`.

Whatever can be checked without sampling is checked here, while the request is answered, so a bad
request gets its 4xx before it queues: the model's task, the server's limits, the uploads, the
sampler options (Pipeline.check) and the condition (conditions.items). What only sampling finds out
fails the job with the same kind of message (422). The native endpoints' bodies (schemas.py) map
onto the CLI's calls one to one; a1111.py builds the same calls from A1111's fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image

from ldmkit.data.label_maps import label_map_ids
from ldmkit.pipeline import conditions
from ldmkit.pipeline.generate import SHORTCUTS
from ldmkit.pipeline.inpaint import inpaint
from ldmkit.pipeline.metadata import add_inputs
from ldmkit.pipeline.upscale import tile_sizes, upscale
from ldmkit.serve.errors import ApiError
from ldmkit.serve.images import decode_image
from ldmkit.serve.registry import ServedModel
from ldmkit.serve.schemas import GenerateRequest, InpaintRequest, Limits, UpscaleRequest

Callback = Callable[[dict], None]
Work = Callable[[Callback], list[Image.Image]]
FIELD_KINDS = {"prompt": "text", "class": "class", "layout": "layout", "label_map": "semantic",
               "negative_prompt": "text", "negative_class": "class"}


def upload(data: str, what: str, limits: Limits) -> tuple[Image.Image, str]:
    """An uploaded image and the sha256 of its bytes."""
    return decode_image(data, what, limits.max_upload_bytes, limits.max_pixels)


def check_pixels(height: int, width: int, limits: Limits, what: str = "the image") -> None:
    if height * width > limits.max_pixels:
        raise ApiError(413, f"{what} would be {width}x{height} px, over the server's limit of {limits.max_pixels} "
                            "pixels per image")


def check_count(n: int, limits: Limits) -> None:
    if n > limits.max_images:
        raise ApiError(422, f"{n} images in one request is over the server's limit of {limits.max_images}; ask for "
                            "fewer per request")


def sampling(req: Any) -> dict:
    """The sampler settings every task shares, as keyword arguments."""
    return {"steps": req.steps, "sampler": req.sampler, "guidance": req.guidance, "eta": req.eta}


def shortcuts(req: GenerateRequest) -> dict:
    """The sampling shortcuts a request sets, as the CLI passes them (cli/common.py shortcut_options)."""
    given = {"karras": req.karras or None, "cache_interval": req.cache_interval,
             "guidance_interval": None if req.guidance_interval is None else tuple(req.guidance_interval)}
    return {name: value for name, value in given.items() if value is not None}


# --- the three tasks ---------------------------------------------------------------------------------

def pipeline_work(model: ServedModel, options: dict, limits: Limits, inputs: dict | None = None) -> Work:
    """`model.pipe(**options)`, checked; `inputs` (sha256 of uploads) go into every image's parameters."""
    pipe, cfg, n = model.pipe, model.conditioning, options["n"]
    check_count(n, limits)
    pipe.check(options["steps"], options["sampler"], options["guidance"], options["eta"],
               **{name: options[name] for name in SHORTCUTS if name in options})
    items = conditions.items(cfg, options.get("condition"), n)
    asked = {conditions.image_size(cfg, item) for item in items} - {None}
    if options.get("init_image") is not None:
        first = options["init_image"]
        first = first[0] if isinstance(first, list) else first
        asked.add((first.height, first.width))
    size = model.pipe.config.image_size
    height, width = max(asked) if asked else (options.get("height") or size, options.get("width") or size)
    check_pixels(height, width, limits)

    def work(callback: Callback) -> list[Image.Image]:
        images = pipe(**options, callback=callback)
        for image in images if inputs else []:
            add_inputs(image, inputs)
        return images

    return work


def upscale_work(model: ServedModel, image: Image.Image, digest: str, options: dict, limits: Limits) -> Work:
    """`ldmkit upscale` of one uploaded image; `options`: sampling, seed, tile, overlap, color_fix."""
    factor = model.conditioning.low_res.factor
    check_pixels(image.height * factor, image.width * factor, limits, "the upscaled image")
    model.pipe.check(options["steps"], options["sampler"], options["guidance"], options["eta"])
    tile_sizes(model.pipe.model, options["tile"], options["overlap"])  # (a ConfigError: 422)
    return lambda callback: [upscale(model.pipe, image, **options, inputs={"image_sha256": digest},
                                     callback=callback)]


def inpaint_work(model: ServedModel, images: list[tuple[Image.Image, str]], mask: tuple[Image.Image, str], n: int,
                 seed: int, options: dict, limits: Limits) -> Work:
    """`ldmkit inpaint` n times: image i is images[i % len] with seed + i, the same mask for all."""
    check_count(n, limits)
    for image, _ in images:
        conditions.check_mask_size(mask[0].size, image.size)  # (a ShapeError: 422)
    conditions.check_mask_not_empty(mask[0])
    model.pipe.check(options["steps"], options["sampler"], options["guidance"], options["eta"])

    def work(callback: Callback) -> list[Image.Image]:
        out = []
        for i in range(n):
            (image, digest), report = images[i % len(images)], _nth(callback, i, n)
            out.append(inpaint(model.pipe, image, mask[0], seed=seed + i, callback=report, **options,
                               inputs={"image_sha256": digest, "mask_sha256": mask[1]}))
        return out

    return work


def _nth(callback: Callback, i: int, n: int) -> Callback:
    return lambda info: callback({**info, "image": i, "images": n})


# --- the native endpoints' bodies -------------------------------------------------------------------

def generate(model: ServedModel, req: GenerateRequest, limits: Limits) -> Work:
    cfg = model.conditioning
    given = {field: getattr(req, "class_" if field == "class" else field) for field in FIELD_KINDS}
    conditions.check_kinds(cfg, {f"'{field}'": FIELD_KINDS[field] for field, value in given.items()
                                 if value is not None})  # (a ConfigError: 422)
    if given["label_map"] is not None:
        given["label_map"] = _label_map(model, given["label_map"], limits)
    if isinstance(given["layout"], list):
        given["layout"] = [_layout(layout) for layout in given["layout"]]
    elif given["layout"] is not None:
        given["layout"] = _layout(given["layout"])
    per_kind = {FIELD_KINDS[f]: given[f] for f in ("prompt", "class", "layout", "label_map") if given[f] is not None}
    inputs, init, mask = {}, None, None
    if req.init_image is not None:
        init, inputs["init_image_sha256"] = upload(req.init_image, "init_image", limits)
    if req.mask is not None:
        mask, inputs["mask_sha256"] = upload(req.mask, "mask", limits)
    options = {"n": req.n, **sampling(req), "seed": req.seed, "height": req.height, "width": req.width,
               "batch_size": req.batch_size, "condition": _condition(cfg, per_kind, req.n),
               "negative": req.negative_prompt if req.negative_prompt is not None else req.negative_class,
               "init_image": init, "strength": req.strength, "mask": mask, **shortcuts(req)}
    return pipeline_work(model, options, limits, inputs)


def upscale_request(model: ServedModel, req: UpscaleRequest, limits: Limits) -> Work:
    image, digest = upload(req.image, "image", limits)
    options = {**sampling(req), "seed": req.seed, "tile": req.tile, "overlap": req.overlap,
               "color_fix": req.color_fix}
    return upscale_work(model, image, digest, options, limits)


def inpaint_request(model: ServedModel, req: InpaintRequest, limits: Limits) -> Work:
    image, mask = upload(req.image, "image", limits), upload(req.mask, "mask", limits)
    return inpaint_work(model, [image], mask, 1, req.seed, sampling(req), limits)


def _layout(layout) -> dict | None:
    """A layout as conditions.py takes it; no boxes: None, the unconditional layout."""
    return layout.model_dump() if layout.boxes or layout.labels else None


def _label_map(model: ServedModel, data: str, limits: Limits):
    image, _ = upload(data, "label_map", limits)
    ids = label_map_ids(image, "label_map")
    classes = model.conditioning.semantic.num_classes
    if int(ids.max()) >= classes:
        raise ApiError(422, f"label_map holds class id {int(ids.max())}, but {model.name!r} knows ids 0 .. "
                            f"{classes - 1}")
    return ids


def _condition(cfg, per_kind: dict[str, Any], n: int) -> Any:
    """One condition per image from each kind's value or list of values (cycled, as the CLI's repeated flags)."""
    if not cfg.kinds:
        return None
    cycled = {kind: [v[i % len(v)] for i in range(n)] if isinstance(v, list) else [v] * n
              for kind, v in per_kind.items()}
    if cfg.hybrid == "none":
        return cycled.get(cfg.kind)
    return [{kind: cycled.get(kind, [None] * n)[i] for kind in cfg.kinds} for i in range(n)]

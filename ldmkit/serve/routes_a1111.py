"""The A1111-compatible endpoints under /sdapi/v1 (see a1111.py for the field mapping).

txt2img and img2img wait for their job like A1111 (the queue is shared with the native endpoints);
a client that disconnects cancels its job, and /sdapi/v1/interrupt cancels the running ones, whose
requests then answer with no images and "interrupted": true in their info. /progress reports the
running job (A1111 has one global state): its progress, the ETA and the latest decoded preview.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from PIL import Image, ImageOps

from ldmkit.sampling import sampler_options
from ldmkit.serve import a1111, tasks
from ldmkit.serve.errors import ApiError
from ldmkit.serve.registry import GUIDE_DEFAULT
from ldmkit.serve.state import ServerState, get_state

router = APIRouter(prefix="/sdapi/v1", tags=["A1111"])


def _model(state: ServerState, req: a1111.Txt2ImgRequest):
    name = req.override_settings.get("sd_model_checkpoint")
    return state.registry.find(str(name)) if name else state.registry.find(state.checkpoint)


def _common(state: ServerState, req: a1111.Txt2ImgRequest):
    """(model, sampler settings, karras, A1111 sampler name, seed, ignored fields) of any A1111 request."""
    model = _model(state, req)
    sampler, karras, label = a1111.resolve_sampler(req.sampler_name or req.sampler_index, req.scheduler)
    ignored = req.ignored()
    eta = req.eta
    if eta is not None and "eta" not in sampler_options(sampler):
        eta, ignored = None, ignored + ["eta"]
    guidance = req.cfg_scale if model.conditioning.kinds or model.guided else 1.0
    if guidance != req.cfg_scale and "cfg_scale" in req.model_fields_set:  # (only what the client sent)
        ignored.append("cfg_scale")
    if model.guided and "cfg_scale" not in req.model_fields_set:
        guidance = GUIDE_DEFAULT  # (clients that send none get autoguidance's default, not A1111's 7)
    seed = secrets.randbelow(2**32) if req.seed == -1 else req.seed
    options = {"steps": req.steps, "sampler": sampler, "guidance": guidance, "eta": eta}
    return model, options, karras, label, seed, ignored


async def _answer(state: ServerState, request: Request, work, task: str, model, req, label, karras, guidance,
                  strength, ignored) -> dict:
    job = state.submit(lambda cb: a1111.response(req, model, work(cb), label, karras, guidance, strength, ignored),
                       task, model)
    try:
        return await state.outcome(job, request)
    except ApiError as err:
        if err.status_code != 409:
            raise
        answer = a1111.response(req, model, [], label, karras, guidance, strength, ignored)
        answer["info"] = json.dumps({**json.loads(answer["info"]), "interrupted": True})
        return answer


@router.post("/txt2img")
async def txt2img(request: Request, req: a1111.Txt2ImgRequest, state: ServerState = Depends(get_state)) -> dict:
    model, options, karras, label, seed, ignored = _common(state, req)
    if model.task != "generate":
        raise ApiError(422, f"model {model.name!r} does {model.task}: use "
                            f"{'/sdapi/v1/img2img with a mask' if model.task == 'inpaint' else '/ldmkit/v1/upscale'}")
    condition, negative = a1111.conditions_of(model, req.prompt, req.negative_prompt)
    options.update(n=req.batch_size * req.n_iter, seed=seed, height=req.height, width=req.width,
                   batch_size=req.batch_size, condition=condition, negative=negative)
    if karras:
        options["karras"] = True
    work = tasks.pipeline_work(model, options, state.limits)
    return await _answer(state, request, work, "txt2img", model, req, label, karras, options["guidance"], None,
                         ignored)


@router.post("/img2img")
async def img2img(request: Request, req: a1111.Img2ImgRequest, state: ServerState = Depends(get_state)) -> dict:
    model, options, karras, label, seed, ignored = _common(state, req)
    limits, n = state.limits, req.batch_size * req.n_iter
    inits = [tasks.upload(data, f"init_images[{i}]", limits) for i, data in enumerate(req.init_images)]
    if req.width or req.height:  # A1111's resize_mode 0: just resize to the asked size
        size = (req.width or inits[0][0].width, req.height or inits[0][0].height)
        tasks.check_pixels(size[1], size[0], limits)
        inits = [(image.resize(size, Image.LANCZOS) if image.size != size else image, digest)
                 for image, digest in inits]
    mask = None
    if req.mask is not None:
        image, digest = tasks.upload(req.mask, "mask", limits)
        image = ImageOps.invert(image.convert("L")) if req.inpainting_mask_invert else image
        mask = (image.resize(inits[0][0].size, Image.NEAREST) if image.size != inits[0][0].size else image, digest)
    if model.task == "inpaint":
        if mask is None:
            raise ApiError(422, f"model {model.name!r} is an inpainting model: send a mask (white = fill)")
        if karras:
            raise ApiError(422, "inpainting models sample without the Karras schedule here; choose a sampler "
                                "without Karras")
        a1111.conditions_of(model, req.prompt, req.negative_prompt)
        work = tasks.inpaint_work(model, inits, mask, n, seed, options, limits)
        ignored += ["denoising_strength"] if "denoising_strength" in req.model_fields_set else []
        strength = None
    elif model.task == "generate":
        condition, negative = a1111.conditions_of(model, req.prompt, req.negative_prompt)
        images = [image for image, _ in inits]
        options.update(n=n, seed=seed, batch_size=req.batch_size, condition=condition, negative=negative,
                       init_image=images[0] if len(images) == 1 else [images[i % len(images)] for i in range(n)],
                       strength=req.denoising_strength, mask=None if mask is None else mask[0])
        if karras:
            options["karras"] = True
        inputs = {"init_image_sha256": inits[0][1]} if len(inits) == 1 else {}
        inputs.update({"mask_sha256": mask[1]} if mask else {})
        work, strength = tasks.pipeline_work(model, options, limits, inputs), req.denoising_strength
    else:
        raise ApiError(422, f"model {model.name!r} is a super-resolution model: use POST /ldmkit/v1/upscale")
    return await _answer(state, request, work, "img2img", model, req, label, karras, options["guidance"], strength,
                         ignored)


@router.get("/sd-models")
def sd_models(state: ServerState = Depends(get_state)) -> list[dict]:
    return [a1111.model_item(model) for model in state.registry.models.values()]


@router.get("/samplers")
def samplers() -> list[dict]:
    return a1111.sampler_items()


@router.get("/schedulers")
def schedulers() -> list[dict]:
    return a1111.scheduler_items()


@router.get("/options")
def get_options(state: ServerState = Depends(get_state)) -> dict:
    model = state.registry.find(state.checkpoint)
    return {"sd_model_checkpoint": model.title, "sd_checkpoint_hash": model.sha256, "samples_format": "png",
            "show_progress_every_n_steps": state.limits.preview_every,
            "live_previews_enable": state.limits.preview_every > 0}


@router.post("/options")
def set_options(settings: dict[str, Any] = Body(...), state: ServerState = Depends(get_state)) -> dict:
    """Only sd_model_checkpoint has an effect (for every A1111 client, as in A1111); the rest are listed."""
    checkpoint = settings.get("sd_model_checkpoint")
    if checkpoint is not None:
        state.checkpoint = state.registry.find(str(checkpoint)).name
    return {"sd_model_checkpoint": state.registry.find(state.checkpoint).title,
            "ignored": sorted(k for k in settings if k != "sd_model_checkpoint")}


@router.get("/progress")
def progress(skip_current_image: bool = False, state: ServerState = Depends(get_state)) -> dict:
    running, waiting = state.queue.running(), state.queue.waiting()
    count = len(running) + waiting
    job = running[0] if running else None
    if job is None:
        return {"progress": 0.0, "eta_relative": 0.0, "current_image": None, "textinfo": None,
                "state": _state(None, count)}
    job.watched = True  # previews from now on
    snap = job.snapshot()
    return {"progress": snap["progress"], "eta_relative": snap["eta_seconds"] or 0.0, "state": _state(job, count),
            "current_image": None if skip_current_image else job.preview, "textinfo": None}


def _state(job, count: int) -> dict:
    return {"skipped": False, "interrupted": bool(job and job.cancel_requested), "stopping_generation": False,
            "job": job.id if job else "", "job_count": count, "job_no": 0,
            "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created)) if job else "0",
            "sampling_step": job.step if job else 0, "sampling_steps": job.steps if job else 0}


@router.post("/interrupt")
def interrupt(state: ServerState = Depends(get_state)) -> dict:
    for job in state.queue.running():
        state.queue.cancel(job)
    return {}

"""The native endpoints under /ldmkit/v1: every task and condition ldmkit has, and the queue's jobs.

POST /generate, /upscale and /inpaint take the CLI's options (schemas.py). A request's job lives as
long as its connection: with `Accept: text/event-stream` (or ?stream=true) the answer is a stream of
server-sent events while it runs,
    queued     {"id", "position", ...}           on submission and whenever the position changes
    progress   {"id", "step", "steps", "progress", "eta_seconds", "preview"?}   after every step
               ("preview": a base64 PNG of the decoded prediction, every --preview-every steps)
    done       {"id", "images": [{"png", "seed", "parameters"}]}
    error      {"id", "status", "error"}        cancelled   {"id"}
and otherwise one JSON answer {"id", "images": [...]} at the end. Either way, a client that
disconnects cancels its job; POST /jobs/{id}/cancel cancels it from anywhere.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from ldmkit.serve import tasks
from ldmkit.serve.errors import ApiError
from ldmkit.serve.images import png_base64
from ldmkit.serve.jobs import Job
from ldmkit.serve.schemas import GenerateRequest, InpaintRequest, UpscaleRequest
from ldmkit.serve.state import ServerState, get_state

router = APIRouter(prefix="/ldmkit/v1", tags=["ldmkit"])
KEEPALIVE_SECONDS = 10.0


def encoded(work: tasks.Work) -> tasks.Work:
    """The work, with its images encoded as PNGs (with their parameters) on the worker's thread."""
    def run(callback):
        return [{"png": png_base64(image), "seed": json.loads(image.info["ldmkit"])["seed"],
                 "parameters": json.loads(image.info["ldmkit"])} for image in work(callback)]
    return run


async def answer(state: ServerState, request: Request, job: Job, stream: bool):
    if stream or "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(events(state, request, job), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Job-Id": job.id})
    return {"id": job.id, "images": await state.outcome(job, request)}


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def events(state: ServerState, request: Request, job: Job) -> AsyncIterator[str]:
    """The job's server-sent events; leaving early (the client went away) cancels the job."""
    version, position, preview, sent = job.version, job.position, None, 0.0
    job.watched = True
    try:
        yield sse("queued", job.snapshot())  # the job's id, at once
        while True:
            changed = await job.changed(version, KEEPALIVE_SECONDS)
            if job.finished:
                if job.status == "done" and sent < 1.0:  # progress is sampled: a fast last step may be unseen
                    yield sse("progress", {**job.snapshot(), "progress": 1.0})
                yield final(job)
                return
            if await request.is_disconnected():
                return
            if changed == version:
                yield ": keep-alive\n\n"
                continue
            version, snap = changed, job.snapshot()
            if job.status == "queued" and job.position != position:
                position = job.position
                yield sse("queued", snap)
            elif job.status == "running":
                if job.preview is not preview:
                    preview = snap["preview"] = job.preview
                sent = snap["progress"]
                yield sse("progress", snap)
    finally:
        if not job.finished:
            state.queue.cancel(job)


def final(job: Job) -> str:
    if job.status == "done":
        images, job.result = job.result, None
        return sse("done", {"id": job.id, "images": images})
    if job.status == "failed":
        return sse("error", {"id": job.id, "status": job.error[0], "error": job.error[1]})
    return sse("cancelled", {"id": job.id})


@router.get("/models")
def models(state: ServerState = Depends(get_state)) -> list[dict]:
    """Every served model and what it takes (the page builds its form from this)."""
    return [model.describe() for model in state.registry.models.values()]


@router.post("/generate")
async def generate(request: Request, req: GenerateRequest, stream: bool = False,
                   state: ServerState = Depends(get_state)):
    model = state.registry.get(req.model, "generate")
    job = state.submit(encoded(tasks.generate(model, req, state.limits)), "generate", model)
    return await answer(state, request, job, stream)


@router.post("/upscale")
async def upscale(request: Request, req: UpscaleRequest, stream: bool = False,
                  state: ServerState = Depends(get_state)):
    model = state.registry.get(req.model, "upscale")
    job = state.submit(encoded(tasks.upscale_request(model, req, state.limits)), "upscale", model)
    return await answer(state, request, job, stream)


@router.post("/inpaint")
async def inpaint(request: Request, req: InpaintRequest, stream: bool = False,
                  state: ServerState = Depends(get_state)):
    model = state.registry.get(req.model, "inpaint")
    job = state.submit(encoded(tasks.inpaint_request(model, req, state.limits)), "inpaint", model)
    return await answer(state, request, job, stream)


@router.get("/jobs")
def jobs(state: ServerState = Depends(get_state)) -> list[dict]:
    """The queue: running and waiting jobs, then the recently finished ones."""
    return [job.snapshot() for job in state.queue.jobs()]


def _job(state: ServerState, job_id: str) -> Job:
    job = state.queue.get(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id!r} (finished jobs are forgotten after a while)")
    return job


@router.get("/jobs/{job_id}")
def job_status(job_id: str, state: ServerState = Depends(get_state)) -> dict:
    return _job(state, job_id).snapshot()


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: str, state: ServerState = Depends(get_state)) -> dict:
    job = _job(state, job_id)
    if not job.finished:
        state.queue.cancel(job)
    return job.snapshot()

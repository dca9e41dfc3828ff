"""What every route shares: the models, the queue, the limits, and the glue from a request to its job.

`submit` turns checked work into a queued job (503 + Retry-After when the queue is full);
`outcome` waits for it on behalf of a client that waits for its answer, and cancels it when that
client goes away first.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from ldmkit.serve.errors import ApiError
from ldmkit.serve.jobs import Job
from ldmkit.serve.queue import JobQueue, QueueFull
from ldmkit.serve.registry import Registry, ServedModel
from ldmkit.serve.schemas import Limits

POLL_SECONDS = 0.5  # how often a waiting request checks that its client is still there


@dataclass
class ServerState:
    registry: Registry
    queue: JobQueue
    limits: Limits
    checkpoint: str  # the model A1111 requests use without override_settings (POST /sdapi/v1/options)

    def submit(self, work, task: str, model: ServedModel) -> Job:
        job = Job(work, task, model, self.limits.preview_every)
        try:
            return self.queue.submit(job)
        except QueueFull as full:
            raise ApiError(503, str(full), {"Retry-After": str(full.retry_after)}) from None

    async def outcome(self, job: Job, request: Request):
        """The job's result once it is done; an ApiError if it failed (its status) or was cancelled (409).
        A client that disconnects while it waits cancels its job."""
        while not job.finished:
            await job.ended(POLL_SECONDS)
            if not job.finished and await request.is_disconnected():
                self.queue.cancel(job)
                raise ApiError(499, "the client closed the connection")
        if job.status == "failed":
            raise ApiError(*job.error)
        if job.status == "cancelled":
            raise ApiError(409, f"job {job.id} was cancelled")
        result, job.result = job.result, None  # delivered once: the server keeps no images
        return result


def get_state(request: Request) -> ServerState:
    """The FastAPI dependency that hands routes the server's state."""
    return request.app.state.ldmkit

"""A job: one request's work, its place in the queue, its progress and previews, and its cancel.

The work runs on a worker thread (queue.py) as `work(callback)`; `callback` is the Pipeline's step
callback, which records the step, makes a decoded preview every `preview_every` steps while someone
watches the job (`watched`: a progress stream or A1111's /progress; decoding costs time), and raises
the private `_Cancelled` once the job is cancelled, which unwinds the sampler at the next step.
Clients on the event loop wait for changes with `await job.changed(version)`: every change bumps
`version` and wakes them through their own loop (thread-safe); a request that only needs the result
waits with `await job.ended()`, which only the end wakes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import torch

from ldmkit.errors import LdmkitError
from ldmkit.serve.images import preview_base64

log = logging.getLogger("ldmkit.serve")
FINISHED = ("done", "failed", "cancelled")


class _Cancelled(Exception):
    """Raised inside the step callback to stop a cancelled job; never leaves this module's `run`."""


class Job:
    """`work(callback) -> result` for `model` on `device`; status queued -> running -> done | failed | cancelled."""

    def __init__(self, work: Callable[[Callable[[dict], None]], Any], task: str, model, preview_every: int = 5):
        self.id = uuid.uuid4().hex
        self.work, self.task, self.model, self.preview_every = work, task, model, preview_every
        self.device = str(model.pipe.device)
        self.status, self.position = "queued", 0
        self.step = self.steps = 0
        self.progress = 0.0
        self.preview: str | None = None  # base64 PNG of the latest decoded preview
        self.watched = False  # previews are decoded only for jobs someone watches
        self.result: Any = None
        self.error: tuple[int, str] | None = None  # (HTTP status, message)
        self.created, self.started, self.finished_at = time.time(), None, None
        self.version = 0
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()  # woken by every change
        self._finish_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()  # by the end only

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def snapshot(self) -> dict:
        """The job's state as JSON (no images)."""
        eta = None
        if self.status == "running" and self.progress > 0:
            elapsed = time.time() - self.started
            eta = max(0.0, elapsed / self.progress - elapsed)
        return {"id": self.id, "task": self.task, "model": self.model.name, "status": self.status,
                "position": self.position, "step": self.step, "steps": self.steps, "progress": round(self.progress, 4),
                "eta_seconds": None if eta is None else round(eta, 2),
                "error": None if self.error is None else self.error[1]}

    # --- changes, seen from the event loop ---------------------------------------------------------------

    def notify(self, finished: bool = False) -> None:
        """Bump the version and wake every waiter (from any thread); those that wait for the end only
        when `finished` (the job has ended, or may have: a cancel)."""
        with self._lock:
            self.version += 1
            waiters = list(self._waiters) + (list(self._finish_waiters) if finished else [])
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: its waiter is gone
                pass

    async def changed(self, version: int, timeout: float) -> int:
        """Wait until the version differs from `version` (or `timeout` seconds pass); the version now."""
        await self._wait(self._waiters, lambda: self.version != version, timeout)
        return self.version

    async def ended(self, timeout: float) -> None:
        """Wait until the job has finished (or `timeout` seconds pass), not woken by its steps: an event
        loop woken at every step slowed the worker by a fifth (the GIL and the 2 cores are shared)."""
        await self._wait(self._finish_waiters, lambda: self.finished, timeout)

    async def _wait(self, waiters: set, ready: Callable[[], bool], timeout: float) -> None:
        event, loop = asyncio.Event(), asyncio.get_running_loop()
        with self._lock:  # checked and registered under the lock that notify takes: no wake-up is lost
            if ready():
                return
            waiters.add((loop, event))
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                waiters.discard((loop, event))

    # --- the worker's side ---------------------------------------------------------------------------

    def cancel(self) -> None:
        self._cancel.set()
        self.notify(finished=True)  # (a waiting job is cancelled at once)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def run(self) -> None:
        """Do the work on this (worker) thread; every outcome ends in a finished status, nothing is raised."""
        self.status, self.started, self.position = "running", time.time(), 0
        self.notify()
        try:
            if self._cancel.is_set():
                raise _Cancelled
            self.result = self.work(self._step)
            self.status, self.progress = "done", 1.0
        except _Cancelled:
            self.status = "cancelled"
        except LdmkitError as err:
            self.status, self.error = "failed", (422, str(err))
        except (MemoryError, torch.OutOfMemoryError):
            self.status, self.error = "failed", (503, "out of memory on the server; ask for fewer or smaller images")
        except Exception as err:  # a bug: the client gets its type, the log the traceback
            log.error("job %s (%s on %s) failed", self.id, self.task, self.model.name, exc_info=err)
            self.status, self.error = "failed", (500, f"internal error ({type(err).__name__}); the server's log "
                                                      "has the details")
        self.finished_at = time.time()
        self.notify(finished=True)

    def _step(self, info: dict) -> None:
        """The step callback: progress over the whole request, a preview every few steps, the cancel."""
        if self._cancel.is_set():
            raise _Cancelled
        i, steps = info["i"] + 1, info["steps"]
        within = i / steps
        if "tiles" in info:  # super-resolution: tile after tile
            progress = (info["tile"] + within) / info["tiles"]
        else:  # a batch of images info["image"] .. + batch of info["images"]
            progress = (info.get("image", 0) + info["x"].shape[0] * within) / info.get("images", info["x"].shape[0])
        if self.watched and self.preview_every and i % self.preview_every == 0 and i < steps:
            self.preview = preview_base64(self.model.pipe.decode(info["x0"][:1].float())[0])
        self.step, self.steps, self.progress = i, steps, min(progress, 1.0)
        self.notify()

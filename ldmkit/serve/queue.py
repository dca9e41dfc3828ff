"""The one queue all clients share, bounded, and one worker thread per device that runs its jobs.

A job waits in submission order; each device's worker takes the oldest job for a model on its
device, so a device runs one job at a time. `position` is 0 while a job runs and k when k - 1 jobs
are ahead of it on its device. With `max_waiting` jobs waiting, `submit` raises QueueFull with a
Retry-After estimate (recent job durations times the jobs ahead, per worker). Finished jobs stay
listed (without their results) for a while: the last `keep` of them.

The workers take the process's torch threads (`start`'s `threads`), and `ldmkit serve` keeps one for
the main thread, which loads the models and serves HTTP: OpenMP (libgomp) spins only briefly while it
manages more threads than there are cores, so a worker beside a main thread with its own team of
helpers ran at half speed on 2 cores (benchmarks/serve_load.py: 2.4 against 5.1 images/s).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque

import torch

from ldmkit.serve.jobs import Job


class QueueFull(Exception):
    def __init__(self, waiting: int, retry_after: int):
        super().__init__(f"the queue is full ({waiting} jobs waiting); retry in about {retry_after} s")
        self.retry_after = retry_after


class JobQueue:
    def __init__(self, max_waiting: int = 16, keep: int = 64):
        self.max_waiting, self.keep = max_waiting, keep
        self._cond = threading.Condition()
        self._waiting: list[Job] = []
        self._running: dict[str, Job] = {}  # device -> job
        self._jobs: OrderedDict[str, Job] = OrderedDict()  # id -> job, waiting, running and recent
        self._durations: deque[float] = deque(maxlen=20)
        self._threads: list[threading.Thread] = []
        self._stopping = False

    # --- clients ------------------------------------------------------------------------------------

    def submit(self, job: Job) -> Job:
        with self._cond:
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(len(self._waiting), self._retry_after())
            self._waiting.append(job)
            self._jobs[job.id] = job
            self._forget_old()
            self._renumber()
            self._cond.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._cond:
            return list(self._jobs.values())

    def running(self) -> list[Job]:
        with self._cond:
            return list(self._running.values())

    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def cancel(self, job: Job) -> None:
        """Cancel a job: a waiting one leaves the queue at once, a running one stops at its next step."""
        with self._cond:
            if job in self._waiting:
                self._waiting.remove(job)
                job.status = "cancelled"
                self._renumber()
        job.cancel()

    # --- workers ------------------------------------------------------------------------------------

    def start(self, devices: set[str], threads: int | None = None) -> None:
        """One worker per device; `threads`: the torch threads each worker runs with (None: as it finds them)."""
        for device in sorted(devices):
            thread = threading.Thread(target=self._work, args=(device, threads), name=f"ldmkit-worker-{device}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel every job and end the workers (the running jobs stop at their next step)."""
        with self._cond:
            self._stopping = True
            jobs = self._waiting + list(self._running.values())
            self._cond.notify_all()
        for job in jobs:
            self.cancel(job)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _work(self, device: str, threads: int | None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)  # (a thread's own setting: OpenMP keeps one per thread)
        while True:
            with self._cond:
                job = self._next(device)
                while job is None and not self._stopping:
                    self._cond.wait()
                    job = self._next(device)
                if job is None:
                    return
                self._waiting.remove(job)
                self._running[device] = job
                self._renumber()
            job.run()
            if job.cancel_requested:
                job.result = None  # its client has gone
            with self._cond:
                del self._running[device]
                if job.status == "done":
                    self._durations.append(job.finished_at - job.started)
                self._forget_old()

    def _next(self, device: str) -> Job | None:
        return next((job for job in self._waiting if job.device == device), None)

    def _renumber(self) -> None:
        """Positions after the waiting list changed (under the lock); moved jobs are told."""
        ahead: dict[str, int] = {}
        for job in self._waiting:
            ahead[job.device] = ahead.get(job.device, 0) + 1
            if job.position != ahead[job.device]:
                job.position = ahead[job.device]
                job.notify()

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.finished]
        for job_id in finished[:max(0, len(finished) - self.keep)]:
            del self._jobs[job_id]

    def _retry_after(self) -> int:
        seconds = sum(self._durations) / len(self._durations) if self._durations else 5.0
        workers = max(1, len(self._threads))
        return max(1, math.ceil(seconds * (len(self._waiting) + 1) / workers))

"""The server as one FastAPI app: the routes, the JSON errors, the security middleware, the workers.

    app = create_app(registry, Limits(), token="...")   # then uvicorn.run(app, host=..., port=...)

The queue's worker threads (one per device the models are on) start and stop with the app.
No interactive docs are served (they would load scripts from a CDN); /openapi.json describes
every endpoint.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from ldmkit.serve import errors, routes_a1111, routes_native, routes_page
from ldmkit.serve.queue import JobQueue
from ldmkit.serve.registry import Registry
from ldmkit.serve.schemas import Limits
from ldmkit.serve.security import Guard
from ldmkit.serve.state import ServerState
from ldmkit.version import __version__


def create_app(registry: Registry, limits: Limits = Limits(), token: str | None = None, cors: str | None = None,
               allowed_hosts: set[str] | None = None, worker_threads: int | None = None) -> FastAPI:
    """`token`: the bearer token every API call needs (None: none); `cors`: the one other web origin allowed;
    `allowed_hosts`: the Host headers answered (None: any; a loopback-bound server passes its own);
    `worker_threads`: the torch threads of each device's worker (serve/queue.py)."""
    queue = JobQueue(limits.queue_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.start({str(model.pipe.device) for model in registry.models.values()}, worker_threads)
        yield
        await run_in_threadpool(queue.stop)

    app = FastAPI(title="ldmkit serve", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.ldmkit = ServerState(registry, queue, limits, registry.default)
    errors.install(app)
    app.include_router(routes_a1111.router)
    app.include_router(routes_native.router)
    routes_page.mount(app)
    app.add_middleware(Guard, token=token, allowed_hosts=allowed_hosts, cors_origin=cors, max_body=limits.max_body)
    if cors:  # outside the guard: preflights are answered, and refusals carry the CORS headers too
        app.add_middleware(CORSMiddleware, allow_origins=[cors], allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=["X-Job-Id", "Retry-After"])
    return app

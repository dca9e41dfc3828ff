"""A served app on tiny untrained models of every kind (tests/cli/conftest.py's), for API and browser tests.

`client` is a FastAPI TestClient (in-process); `live_server` runs the same app under uvicorn on a free
loopback port in a thread, for what only a real connection shows (streams, disconnects, a browser).
"""

import importlib.util
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")

import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import ldmkit  # noqa: E402
from ldmkit.serve.app import create_app  # noqa: E402
from ldmkit.serve.registry import Registry, ServedModel  # noqa: E402
from ldmkit.serve.schemas import Limits  # noqa: E402

_spec = importlib.util.spec_from_file_location("cli_conftest", Path(__file__).parents[1] / "cli" / "conftest.py")
cli_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli_conftest)
TOKEN = "test-token-0123456789"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """kind -> a 16 px model file of that conditioning kind (tests/cli/conftest.py's KINDS)."""
    folder = tmp_path_factory.mktemp("serve-models")
    return {name: cli_conftest.write_model_file(folder / f"{name}.safetensors", cond, **unet)
            for name, (cond, unet) in cli_conftest.KINDS.items()}


@pytest.fixture(scope="session")
def registry(tiny_models) -> Registry:
    """Every kind served once, named by its kind; "text" is the default."""
    order = ["text"] + [k for k in tiny_models if k != "text"]
    return Registry([ServedModel(kind, ldmkit.load(tiny_models[kind], device="cpu", dtype="auto"))  # as `ldmkit serve`
                     for kind in order])


def make_client(registry, **options) -> TestClient:
    limits = options.pop("limits", Limits(max_pixels=128 * 128, max_upload_bytes=1 << 20, max_images=8,
                                          queue_size=4, preview_every=1))
    return TestClient(create_app(registry, limits, **options), raise_server_exceptions=False)


@pytest.fixture
def client(registry):
    with make_client(registry) as c:
        yield c


class LiveServer:
    """The app under uvicorn in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, app):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(20)


@pytest.fixture
def live_server(registry):
    """A running server with a token (TOKEN) and a queue of 2."""
    limits = Limits(max_pixels=128 * 128, max_upload_bytes=1 << 20, max_images=8, queue_size=2, preview_every=1)
    with LiveServer(create_app(registry, limits, token=TOKEN)) as server:
        yield server


def png64(image) -> str:
    """A PIL image as base64 PNG, as clients upload it."""
    import base64
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decoded(data: str):
    """(PIL image, its PNG text chunks) of a base64 PNG from the server."""
    import base64
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image, dict(image.text)

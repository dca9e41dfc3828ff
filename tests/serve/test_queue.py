"""The shared queue: its bound (503 + Retry-After), positions, progress, interrupt, cancel, and a client
that disconnects cancelling its job (the last ones on a real server: only a real connection can drop)."""

import threading
import time

import httpx
import pytest
import torch

from ldmkit.serve.schemas import Limits

from .conftest import TOKEN, make_client

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def until(condition, timeout=20.0):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def held(state, model, gate):
    """A job that runs until `gate` is set."""
    return state.submit(lambda callback: gate.wait(30) and [], "test", model)


@pytest.fixture
def small_queue(registry):
    limits = Limits(max_pixels=128 * 128, max_upload_bytes=1 << 20, max_images=8, queue_size=2, preview_every=1)
    with make_client(registry, limits=limits) as client:
        yield client


def test_the_workers_run_with_the_torch_threads_they_are_given(registry):
    from ldmkit.serve.jobs import Job
    from ldmkit.serve.queue import JobQueue

    here = torch.get_num_threads()
    queue = JobQueue()
    model = next(iter(registry.models.values()))
    queue.start({str(model.pipe.device)}, threads=here + 1)
    try:
        job = queue.submit(Job(lambda callback: torch.get_num_threads(), "test", model))
        until(lambda: job.status == "done")
        assert job.result == here + 1 and torch.get_num_threads() == here  # the worker's own setting
    finally:
        queue.stop()


def test_past_the_queue_limit_is_503_with_retry_after_and_the_server_goes_on(small_queue):
    client, gate = small_queue, threading.Event()
    state = client.app.state.ldmkit
    model = state.registry.get("text")
    running = held(state, model, gate)
    until(lambda: running.status == "running")
    waiting = [held(state, model, gate) for _ in range(2)]
    assert [job.position for job in waiting] == [1, 2] and running.position == 0
    for path, body in (("/sdapi/v1/txt2img", {"prompt": "x", "steps": 1}),
                       ("/ldmkit/v1/generate", {"model": "none", "steps": 1})):
        res = client.post(path, json=body)
        assert res.status_code == 503 and int(res.headers["retry-after"]) >= 1
        assert "queue is full" in res.json()["error"]
    cancelled = client.post(f"/ldmkit/v1/jobs/{waiting[0].id}/cancel").json()
    assert cancelled["status"] == "cancelled" and waiting[1].position == 1  # a waiting job leaves at once
    gate.set()
    until(lambda: waiting[1].finished)
    assert client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1}).status_code == 200


def test_progress_shows_the_running_job_and_interrupt_stops_it(small_queue):
    client, start, gate = small_queue, threading.Event(), threading.Event()
    state = client.app.state.ldmkit
    x = torch.zeros(1, 3, 16, 16)

    def work(callback):  # step 1 of 4, then wait, then step again (where a cancel takes effect)
        start.wait(30)
        callback({"i": 0, "steps": 4, "x": x, "x0": x})
        gate.wait(30)
        callback({"i": 1, "steps": 4, "x": x, "x0": x})
        return []

    job = state.submit(work, "test", state.registry.get("text"))
    job.watched = True  # as after a first /progress call: previews from then on
    start.set()
    until(lambda: job.step == 1)
    progress = client.get("/sdapi/v1/progress").json()
    assert progress["progress"] == 0.25 and progress["current_image"] and progress["eta_relative"] >= 0
    assert progress["state"]["sampling_step"] == 1 and progress["state"]["sampling_steps"] == 4
    assert progress["state"]["job"] == job.id and progress["state"]["job_count"] == 1
    assert client.get("/sdapi/v1/progress", params={"skip_current_image": True}).json()["current_image"] is None
    client.post("/sdapi/v1/interrupt")
    assert client.get("/sdapi/v1/progress").json()["state"]["interrupted"] is True
    gate.set()
    until(lambda: job.finished)
    assert job.status == "cancelled"  # at its next step


def sse_events(res):
    """(event, data) pairs of a streamed answer, as they arrive."""
    import json

    name = None
    for line in res.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, json.loads(line[6:])


def job_status(http, job_id):
    return http.get(f"/ldmkit/v1/jobs/{job_id}").json()["status"]


def test_cancel_stops_a_running_job_at_its_next_step(live_server):
    with httpx.Client(base_url=live_server.url, headers=AUTH, timeout=30) as http:
        with http.stream("POST", "/ldmkit/v1/generate", params={"stream": "true"},
                         json={"model": "text", "prompt": "x", "steps": 1000}) as res:
            stream = sse_events(res)
            name, queued = next(stream)
            assert name == "queued"
            assert next(stream)[0] == "progress"
            assert http.post(f"/ldmkit/v1/jobs/{queued['id']}/cancel").status_code == 200
            names = [name for name, _ in stream]
        assert names[-1] == "cancelled" and job_status(http, queued["id"]) == "cancelled"


def test_a_client_that_disconnects_cancels_its_job(live_server):
    with httpx.Client(base_url=live_server.url, headers=AUTH, timeout=30) as http:
        with http.stream("POST", "/ldmkit/v1/generate", params={"stream": "true"},
                         json={"model": "text", "prompt": "x", "steps": 1000}) as res:
            stream = sse_events(res)
            job_id = next(stream)[1]["id"]
            assert next(stream)[0] == "progress"
        # the stream is closed mid-job
        until(lambda: job_status(http, job_id) != "running", timeout=10)
        assert job_status(http, job_id) == "cancelled"

        with pytest.raises(httpx.ReadTimeout):  # an A1111 client that gives up waiting
            http.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1000}, timeout=httpx.Timeout(10, read=0.5))
        job = next(j for j in reversed(http.get("/ldmkit/v1/jobs").json()) if j["task"] == "txt2img")
        until(lambda: job_status(http, job["id"]) != "running", timeout=10)
        assert job_status(http, job["id"]) == "cancelled"
        assert http.get("/ldmkit/v1/models").status_code == 200


def test_an_interrupted_a1111_request_answers_without_images(live_server):
    answer = {}

    def request():
        answer["res"] = httpx.post(f"{live_server.url}/sdapi/v1/txt2img", headers=AUTH, timeout=30,
                                   json={"prompt": "x", "steps": 1000})

    thread = threading.Thread(target=request)
    thread.start()
    with httpx.Client(base_url=live_server.url, headers=AUTH) as http:
        until(lambda: http.get("/sdapi/v1/progress").json()["state"]["sampling_step"] > 0)
        http.post("/sdapi/v1/interrupt")
    thread.join(30)
    res = answer["res"]
    assert res.status_code == 200 and res.json()["images"] == []
    assert '"interrupted": true' in res.json()["info"]

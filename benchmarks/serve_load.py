"""Load test of `ldmkit serve`: latency under concurrent clients, throughput against the Pipeline called
directly (the server's overhead), resident memory over many requests, and what happens past the queue.

    python benchmarks/serve_load.py                                # a small random model, served here
    python benchmarks/serve_load.py --model runs/emoji/ldm --steps 50 --clients 4 --requests 25
    python benchmarks/serve_load.py --url http://127.0.0.1:7860 --token T --pid 1234 --model runs/emoji/ldm

Without --url it starts `ldmkit serve MODEL --port 0 --queue-size Q` itself (a random 32 px pixel-space
model without --model). Phases, in order, each on an otherwise idle machine:
  cli       --clients x --requests images from ldmkit.load(MODEL) called directly, one per call, as
            the server does them: images/s (needs --model, or the random model), the mean of a run
            before the load phase and one after it (this host's speed drifts by several percent)
  load      --clients threads, each sending --requests A1111 txt2img requests one after another
            (1 image, --steps, --sampler, seed = request number): p50 / p95 latency, images/s, and the
            overhead against `cli` (goal: <= 10 %)
  memory    --memory-requests requests from one client; the server's resident memory (VmRSS, from
            /proc: same machine only) after the first and every fifth of them (goal: flat)
  overflow  queue size + --clients + 4 requests at once: how many are refused (503 + Retry-After),
            and that the server answers afterwards
Prints a Markdown table (and the settings), for the README.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import set_threads  # noqa: E402

SAMPLERS = {"ddim": "DDIM", "plms": "PLMS", "ddpm": "DDPM", "euler": "Euler", "euler_a": "Euler a", "heun": "Heun",
            "dpmpp_2m": "DPM++ 2M"}


def random_model(folder: Path, size: int) -> str:
    """A pixel-space LDM with random weights (the tests' tiny UNet at `size` px), as a model file."""
    import torch

    from ldmkit.checkpoint import save_model_file
    from ldmkit.config import from_dict, to_dict
    from ldmkit.pipeline.checkpoint import KIND, ldm_tensors
    from ldmkit.pipeline.model import LatentDiffusion, LDMConfig

    torch.manual_seed(0)
    unet = {"in_channels": 3, "out_channels": 3, "model_channels": 64, "channel_mult": [1, 2, 2], "num_res_blocks": 1,
            "attention_resolutions": [4], "num_heads": 4}
    cfg = from_dict(LDMConfig, {"unet": unet, "conditioning": {"kind": "none"}, "image_size": size})
    model = LatentDiffusion(cfg)
    path = folder / "random.safetensors"
    save_model_file(path, ldm_tensors(model), KIND, to_dict(model.config))
    return str(path)


def start_server(model: str, queue: int, token: str, threads: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "ldmkit", "serve", model, "--port", "0", "--queue-size", str(queue),
                             "--token", token], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    for line in proc.stdout:
        if line.startswith("serving "):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return proc, line.split(" on ")[1].split("/ ")[0]
    raise SystemExit(f"the server did not start (exit status {proc.wait()})")


def rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def body(args, seed: int) -> dict:
    return {"prompt": "", "steps": args.steps, "sampler_name": SAMPLERS[args.sampler], "seed": seed, "cfg_scale": 1,
            "width": args.size, "height": args.size}


def cli_rate(args, model: str, count: int) -> float:
    """Images per second of the Pipeline called directly, one image per call."""
    import ldmkit

    pipe = ldmkit.load(model, device=args.device, dtype="auto")  # as `ldmkit serve` loads it
    pipe(n=1, steps=args.steps, sampler=args.sampler, seed=0, height=args.size, width=args.size)  # warm-up
    start = time.perf_counter()
    for seed in range(count):
        pipe(n=1, steps=args.steps, sampler=args.sampler, seed=seed, height=args.size, width=args.size)
    return count / (time.perf_counter() - start)


def load_phase(args, url: str, headers: dict) -> tuple[list[float], float, int]:
    """(latencies, wall seconds, failures) of --clients threads x --requests txt2img requests."""
    latencies, failures, lock = [], [0], threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
            for r in range(args.requests):
                start = time.perf_counter()
                res = http.post("/sdapi/v1/txt2img", json=body(args, k * args.requests + r))
                with lock:
                    latencies.append(time.perf_counter() - start)
                    failures[0] += res.status_code != 200

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - start, failures[0]


def memory_phase(args, url: str, headers: dict, pid: int | None) -> list[tuple[int, float | None]]:
    marks = []
    with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
        for r in range(1, args.memory_requests + 1):
            http.post("/sdapi/v1/txt2img", json=body(args, r))
            if r == 1 or r % max(1, args.memory_requests // 5) == 0:
                marks.append((r, rss_mib(pid)))
    return marks


def overflow_phase(args, url: str, headers: dict, queue: int) -> tuple[int, int, set[str], bool]:
    """(sent, refused with 503, Retry-After values, server alive after) for a burst past the queue."""
    sent = queue + args.clients + 4
    statuses, retry = [], set()
    barrier = threading.Barrier(sent)

    def one(seed: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
            barrier.wait()
            res = http.post("/sdapi/v1/txt2img", json=body(args, seed))
            statuses.append(res.status_code)
            if res.status_code == 503:
                retry.add(res.headers.get("retry-after", "missing"))

    threads = [threading.Thread(target=one, args=(seed,)) for seed in range(sent)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    alive = httpx.get(f"{url}/ldmkit/v1/models", headers=headers, timeout=30).status_code == 200
    return sent, statuses.count(503), retry, alive


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", help="a model ldmkit loads (default: a random 32 px pixel-space model)")
    p.add_argument("--url", help="a running server (default: start one here)")
    p.add_argument("--token", default="bench-token", help="the server's token")
    p.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    p.add_argument("--queue-size", type=int, default=8, help="the started server's --queue-size (default 8)")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--requests", type=int, default=10, help="requests per client")
    p.add_argument("--memory-requests", type=int, default=200)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sampler", default="ddim", choices=list(SAMPLERS))
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--device", default="auto", help="for the direct Pipeline calls (the started server: auto)")
    p.add_argument("--threads", type=int, help="torch threads here and in the started server (default: all cores)")
    args = p.parse_args()
    args.threads = set_threads(args.threads)
    headers = {"Authorization": f"Bearer {args.token}"}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or (None if args.url else random_model(Path(tmp), args.size))
        proc, url = ((None, args.url.rstrip("/")) if args.url
                     else start_server(model, args.queue_size, args.token, args.threads))
        pid = args.pid if args.url else proc.pid
        try:
            run(args, model, url, headers, pid)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)


def run(args, model: str | None, url: str, headers: dict, pid: int | None) -> None:
    count = args.clients * args.requests
    httpx.post(f"{url}/sdapi/v1/txt2img", json=body(args, 0), headers=headers, timeout=600).raise_for_status()
    before = cli_rate(args, model, count) if model else None
    latencies, wall, failures = load_phase(args, url, headers)
    served = count / wall
    direct = (before + cli_rate(args, model, count)) / 2 if model else None  # before and after: the host drifts
    marks = memory_phase(args, url, headers, pid)
    queue = args.queue_size if not args.url else "?"
    sent, refused, retry, alive = overflow_phase(args, url, headers, args.queue_size)
    cuts = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    print(f"\nmodel: {model or url}; {args.size} px, {args.sampler}, {args.steps} steps, 1 image per request; "
          f"{args.clients} clients x {args.requests} requests; {args.threads} torch threads\n")
    print("| measure | value |\n| --- | --- |")
    if direct:
        print(f"| Pipeline called directly (the CLI) | {direct:.2f} images/s |")
    overhead = f", overhead {100 * (1 - served / direct):+.1f} % (goal <= 10 %)" if direct else ""
    print(f"| served, {args.clients} concurrent clients | {served:.2f} images/s{overhead} |")
    print(f"| latency p50 / p95 | {statistics.median(latencies):.2f} s / {cuts[18]:.2f} s"
          f"{f' ({failures} failed)' if failures else ''} |")
    rss = " / ".join(f"{mib:.0f}" if mib is not None else "?" for _, mib in marks)
    print(f"| resident memory after requests {' / '.join(str(r) for r, _ in marks)} | {rss} MiB |")
    print(f"| {sent} requests at once, queue size {queue} | {refused} refused with 503, Retry-After "
          f"{', '.join(sorted(retry)) or '-'} s; server {'answering' if alive else 'NOT answering'} afterwards |")


if __name__ == "__main__":
    main()

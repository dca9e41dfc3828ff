"""`ldmkit serve MODEL [MODEL ...] [--host 127.0.0.1] [--port 7860] [--token TOKEN | --no-auth]`: an HTTP server.

Loads the models once and answers an A1111-compatible API (/sdapi/v1/...), native endpoints for
every task (/ldmkit/v1/...) and a web page (/). Listening on anything but loopback needs --token
or --no-auth. Needs the `serve` extra. See docs/serve.md.
"""

from __future__ import annotations

import argparse
import signal
import socket

from ldmkit.cli.common import add_fast_path_arguments

LOOPBACK_HELP = "address to listen on (default: %(default)s, this machine only); any other needs --token or --no-auth"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="run folder, checkpoint folder, model file or diffusers folder; NAME=PATH names it (default: "
                        "its file or folder name). Requests choose among these names only")
    p.add_argument("--host", default="127.0.0.1", help=LOOPBACK_HELP)
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s; 0: any free one)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token", help="every API call must send 'Authorization: Bearer TOKEN' (default: the "
                                      "environment variable LDMKIT_SERVE_TOKEN, if set)")
    auth.add_argument("--no-auth", action="store_true", help="allow anyone who can reach the server (no token)")
    p.add_argument("--cors", metavar="ORIGIN", help="let pages of this one web origin call the API, e.g. "
                                                    "https://example.org (default: none)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N for all models, or one per model "
                                                    "separated by commas; one worker runs the jobs of each device")
    add_fast_path_arguments(p)
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA ones")
    p.add_argument("--text-encoder", metavar="CLIP_DIR", help="Stable Diffusion checkpoints: a local CLIP folder")
    p.add_argument("--lora", action="append", metavar="[MODEL=]LORA[:WEIGHT]",
                   help="merge a LoRA adapter (an ldmkit LoRA run or file, a kohya or diffusers .safetensors) into "
                        "the served model named MODEL (the only one, if one is served), with this weight (default "
                        "1); repeatable. Its images record it, so --from-png regenerates them")
    p.add_argument("--guide", action="append", metavar="[MODEL=]GUIDE",
                   help="autoguidance for the served model named MODEL (the only one, if one is served): a weaker "
                        "model of its latent space, e.g. an early checkpoint of its run; the guidance / cfg_scale "
                        "of a request then mixes the two, unconditional models included")
    p.add_argument("--tiny-decoder", action="append", metavar="[MODEL=]PATH",
                   help="decode the served model MODEL's images (the only one's, if one is served) and previews with "
                        "this TAESD-style tiny decoder (a diffusers AutoencoderTiny folder, TAESD's decoder file, or "
                        "an ldmkit one): much faster at 512 px, approximate images; they record it")
    p.add_argument("--queue-size", type=int, default=16, help="jobs that may wait; past it: 503 (default: "
                                                              "%(default)s)")
    p.add_argument("--max-pixels", type=int, default=1024 * 1024, help="pixels per image, in or out (default: "
                                                                       "%(default)s)")
    p.add_argument("--max-upload-mb", type=float, default=16.0, help="MiB per uploaded image (default: %(default)s)")
    p.add_argument("--max-images", type=int, default=16, help="images per request (default: %(default)s)")
    p.add_argument("--preview-every", type=int, default=5, help="steps between decoded previews (0: none)")


def run(args: argparse.Namespace) -> int:
    from ldmkit.errors import ConfigError

    try:
        import uvicorn

        from ldmkit.serve.security import check_bind, is_loopback, loopback_hosts, server_token
    except ImportError as err:
        raise ConfigError(f"ldmkit serve needs the serve extra ({err.name} is missing): pip install -e '.[serve]'")
    token = server_token(args.token, args.no_auth)
    check_bind(args.host, token, args.no_auth)
    limits = _limits(args)
    if args.cors and (not args.cors.startswith(("http://", "https://")) or args.cors.count("/") != 2):
        raise ConfigError(f"--cors {args.cors!r} is not a web origin; give scheme://host[:port], e.g. "
                          "https://example.org (no path, no trailing slash)")
    from ldmkit.serve.registry import model_names

    named = model_names(args.models)  # (NAME=PATH: names checked before anything else)
    sock = _listen(args.host, args.port)  # before loading: a taken port fails at once
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the main thread loads and serves HTTP; the workers get the threads (serve/queue.py)
    registry = _load(args, named)
    from ldmkit.serve.app import create_app

    port = sock.getsockname()[1]
    app = create_app(registry, limits, token=token, cors=args.cors,
                     allowed_hosts=loopback_hosts(port) if is_loopback(args.host) else None, worker_threads=threads)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {', '.join(registry.models)} on http://{host}:{port}/" + (" (token required)" if token else ""),
          flush=True)
    # on Ctrl-C, open streams get 5 s before they are closed (which cancels their jobs)
    server = _server_class()(uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=5))
    server.run(sockets=[sock])
    return 130 if server.interrupted else 0  # (uvicorn re-raises a captured Ctrl-C, but not always under load)


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, remembering a Ctrl-C so that the command ends with the CLI's status for it."""

        interrupted = False

        def handle_exit(self, sig: int, frame) -> None:
            self.interrupted = self.interrupted or sig == signal.SIGINT
            super().handle_exit(sig, frame)

    return Server


def _limits(args: argparse.Namespace):
    from ldmkit.errors import ConfigError
    from ldmkit.serve.schemas import Limits

    for flag, value, low in (("--port", args.port, 0), ("--queue-size", args.queue_size, 1),
                             ("--max-pixels", args.max_pixels, 64), ("--max-images", args.max_images, 1),
                             ("--preview-every", args.preview_every, 0)):
        if value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}")
    if args.port > 65535 or not 0 < args.max_upload_mb <= 1024:
        raise ConfigError(f"--port must be <= 65535 and --max-upload-mb in (0, 1024], got {args.port} and "
                          f"{args.max_upload_mb}")
    return Limits(max_pixels=args.max_pixels, max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
                  max_images=args.max_images, queue_size=args.queue_size, preview_every=args.preview_every)


LISTEN_BACKLOG = 2048  # uvicorn's default


def _listen(host: str, port: int) -> socket.socket:
    from ldmkit.errors import ConfigError

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)  # connections queue from now on: a client that read "serving ..." gets in
    except OSError as err:
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}; choose another --host or --port")
    return sock


def _load(args: argparse.Namespace, named: list[tuple[str, str]] | None = None):
    import ldmkit
    from ldmkit.device import dtype_name
    from ldmkit.errors import ConfigError
    from ldmkit.serve.registry import (
        Registry,
        ServedModel,
        guide_per_model,
        lora_per_model,
        model_names,
        tiny_decoder_per_model,
    )

    named = model_names(args.models) if named is None else named
    adapters = lora_per_model(args.lora or [], [name for name, _ in named])
    guides = guide_per_model(args.guide or [], [name for name, _ in named])
    tiny = tiny_decoder_per_model(args.tiny_decoder or [], [name for name, _ in named])
    devices = [d.strip() for d in args.device.split(",")]
    if len(devices) not in (1, len(named)):
        raise ConfigError(f"--device lists {len(devices)} devices for {len(named)} models; give one, or one per model")
    served = []
    for i, (name, path) in enumerate(named):
        pipe = ldmkit.load(path, device=devices[i % len(devices)], use_ema=not args.no_ema,
                           text_encoder=args.text_encoder, dtype=args.dtype, compile=args.compile, lora=adapters[name],
                           guide=guides[name], tiny_decoder=tiny[name])
        served.append(ServedModel(name, pipe))
        merged = "".join(f", LoRA {path}:{weight:g}" for path, weight in adapters[name])
        merged += f", guide {guides[name]}" if guides[name] else ""
        merged += f", tiny decoder {tiny[name]}" if tiny[name] else ""
        print(f"loaded {name}: {path} ({pipe.config.conditioning.kind}, {pipe.device}, {dtype_name(pipe.dtype)}"
              f"{merged})", flush=True)
    return Registry(served)

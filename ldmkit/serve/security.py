"""Who may talk to the server: the bind rule, the bearer token, Host / Origin checks and the body limit.

- Binding to anything but a loopback address needs a token (`--token`) or an explicit `--no-auth`.
- With a token, every route but the page's static shell (`/` and `/static/...`, which hold no data
  and do nothing) needs `Authorization: Bearer TOKEN`; HTTP Basic with the token as the password is
  accepted too, since many A1111 clients only speak Basic (`--api-auth`).
- Bound to loopback, a request must name a loopback Host: a web page cannot reach the server
  through a DNS name it controls (DNS rebinding).
- A state-changing request (not GET / HEAD / OPTIONS) from a browser must come from the page's own
  origin or the one `--cors` allows: no other site can submit jobs through a visitor's browser.
- A request body over the limit is refused with 413 before it is read.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import os
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ldmkit.errors import ConfigError
from ldmkit.serve.errors import ApiError

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
TOKEN_ENV = "LDMKIT_SERVE_TOKEN"  # the token, kept out of the process list


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_token(flag: str | None, no_auth: bool, environ: Mapping[str, str] = os.environ) -> str | None:
    """The token every API call needs: --token, else the environment variable LDMKIT_SERVE_TOKEN, none with
    --no-auth; a blank one is a ConfigError that names where it came from."""
    if no_auth:
        return None
    token, source = flag, "--token"
    if flag is None:
        token, source = environ.get(TOKEN_ENV), f"the environment variable {TOKEN_ENV}"
    if token is not None and not token.strip():
        raise ConfigError(f"{source} is empty; give a long random string (e.g. from `openssl rand -hex 16`)")
    return token


def check_bind(host: str, token: str | None, no_auth: bool) -> None:
    """The rule for where the server may listen, as a ConfigError that says what to add."""
    if token is not None and no_auth:
        raise ConfigError("give --token or --no-auth, not both")
    if not is_loopback(host) and token is None and not no_auth:
        raise ConfigError(f"--host {host} makes the server reachable from other machines; give --token TOKEN "
                          "(clients then send 'Authorization: Bearer TOKEN') or --no-auth to let anyone who can "
                          "reach it use it")


def loopback_hosts(port: int) -> set[str]:
    """The Host header values a loopback-bound server answers to."""
    names = {"127.0.0.1", "localhost", "[::1]"}
    return names | {f"{name}:{port}" for name in names}


def token_matches(header: str, token: str) -> bool:
    """An Authorization header that carries `token`: `Bearer TOKEN`, or Basic with TOKEN as the password."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, f"the request body is over the server's limit of {limit // (1 << 20)} MiB; send "
                              "smaller images (or start the server with a larger --max-upload-mb)")


class Guard:
    """ASGI middleware applying the rules above to every HTTP request."""

    def __init__(self, app: ASGIApp, token: str | None = None, allowed_hosts: set[str] | None = None,
                 cors_origin: str | None = None, max_body: int = 32 << 20):
        self.app, self.token, self.allowed_hosts = app, token, allowed_hosts
        self.cors_origin, self.max_body = cors_origin, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            return await _send_error(send, *refusal)
        await self.app(scope, self.limited(receive), send)

    def refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, dict[str, str]] | None:
        host, origin, method = headers.get("host", ""), headers.get("origin"), scope["method"]
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            return 403, f"this server answers to 127.0.0.1 / localhost only, not to Host {host!r}", {}
        if origin is not None and method not in SAFE_METHODS and origin not in self.origins(scope, host):
            return 403, f"requests from the web origin {origin} are not allowed (start the server with --cors " \
                        f"{origin} to allow them)", {}
        public = method in SAFE_METHODS and (scope["path"] == "/" or scope["path"].startswith("/static/"))
        if self.token is not None and method != "OPTIONS" and not public:
            if not token_matches(headers.get("authorization", ""), self.token):
                return 401, "this server needs a token: send 'Authorization: Bearer TOKEN'", {
                    "WWW-Authenticate": 'Bearer realm="ldmkit"'}
        length = headers.get("content-length", "0")
        if not length.isdigit():
            return 400, "the Content-Length header is not a number", {}
        if int(length) > self.max_body:
            return 413, str(BodyTooLarge(self.max_body).detail), {}
        return None

    def origins(self, scope: Scope, host: str) -> set[str]:
        scheme = scope.get("scheme", "http")
        return {f"{scheme}://{host}"} | ({self.cors_origin} if self.cors_origin else set())

    def limited(self, receive: Receive) -> Receive:
        """`receive` that refuses a (chunked) body once it passes the limit."""
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        return wrapped


async def _send_error(send: Send, status: int, message: str, headers: dict[str, str]) -> None:
    body = json.dumps({"error": message, "detail": message}).encode("utf-8")
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})

"""Who may use the server: the bind rule, the token on every API route, Host and Origin checks, CORS,
and the CLI's one-line refusals."""

import base64
import socket
import subprocess
import sys
import time

import httpx
import pytest

from ldmkit.cli import main
from ldmkit.errors import ConfigError
from ldmkit.serve.security import TOKEN_ENV, check_bind, loopback_hosts, server_token

from .conftest import TOKEN, make_client

API = [("GET", "/ldmkit/v1/models"), ("GET", "/ldmkit/v1/jobs"), ("GET", "/sdapi/v1/sd-models"),
       ("GET", "/sdapi/v1/progress"), ("POST", "/sdapi/v1/interrupt"), ("GET", "/sdapi/v1/options"),
       ("POST", "/sdapi/v1/txt2img"), ("POST", "/ldmkit/v1/generate"), ("GET", "/openapi.json")]


def test_binding_beyond_loopback_needs_a_token_or_no_auth():
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(host, None, False)
    with pytest.raises(ConfigError, match="--token TOKEN"):
        check_bind("0.0.0.0", None, False)
    check_bind("0.0.0.0", "secret", False)
    check_bind("192.168.1.5", None, True)
    with pytest.raises(ConfigError, match="not both"):
        check_bind("127.0.0.1", "secret", True)


def test_an_empty_token_names_where_it_came_from():
    with pytest.raises(ConfigError, match="^the environment variable LDMKIT_SERVE_TOKEN is empty"):
        server_token(None, False, {TOKEN_ENV: ""})  # LDMKIT_SERVE_TOKEN= ldmkit serve ...
    with pytest.raises(ConfigError, match="^--token is empty"):
        server_token(" ", False, {TOKEN_ENV: "from-the-environment"})
    assert server_token(None, False, {TOKEN_ENV: "secret"}) == "secret"
    assert server_token("given", False, {TOKEN_ENV: "secret"}) == "given"  # the flag wins
    assert server_token(None, False, {}) is None and server_token(None, True, {TOKEN_ENV: "secret"}) is None


@pytest.mark.parametrize("argv, message", [
    (["--host", "0.0.0.0"], "makes the server reachable from other machines"),
    (["--token", "x", "--no-auth"], "not allowed with argument --token"),
    (["--cors", "example.org"], "is not a web origin"),
    (["--queue-size", "0"], "--queue-size must be >= 1"),
    (["--device", "cpu,cpu,cpu"], "3 devices for 1 models"),
])
def test_the_cli_refuses_bad_options_in_one_line(tiny_models, argv, message, capsys):
    assert main(["serve", tiny_models["none"], "--port", "0", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ldmkit serve: error: ") and message in err and "\n" not in err


def test_the_cli_names_an_empty_token_variable(tiny_models, monkeypatch, capsys):
    monkeypatch.setenv("LDMKIT_SERVE_TOKEN", " ")
    assert main(["serve", tiny_models["none"], "--port", "0", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ldmkit serve: error: the environment variable LDMKIT_SERVE_TOKEN is empty; ")
    assert "\n" not in err


def test_the_cli_refuses_a_taken_port(tiny_models, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", tiny_models["none"], "--port", str(taken.getsockname()[1])]) == 2
    assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err


def test_every_api_route_needs_the_token_but_the_page_shell_does_not(registry):
    with make_client(registry, token=TOKEN) as client:
        for method, path in API:
            res = client.request(method, path, json={} if method == "POST" else None)
            assert res.status_code == 401, path
            assert res.headers["www-authenticate"].startswith("Bearer") and "token" in res.json()["error"]
        assert client.get("/ldmkit/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/ldmkit/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()  # A1111 clients' --api-auth
        assert client.get("/sdapi/v1/sd-models", headers={"Authorization": f"Basic {basic}"}).status_code == 200
        page = client.get("/")
        assert page.status_code == 200 and "<form" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/static/app.js").status_code == 200
        docs = client.get("/docs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert docs.status_code == 404 and docs.json()["error"]  # no docs page (it would load a CDN's scripts)


def test_a_loopback_server_answers_only_to_loopback_host_names(registry):
    with make_client(registry, allowed_hosts=loopback_hosts(7860)) as client:
        assert client.get("/ldmkit/v1/models").status_code == 403  # Host: testserver (DNS rebinding)
        for host in ("127.0.0.1:7860", "localhost:7860", "[::1]:7860"):
            assert client.get("/ldmkit/v1/models", headers={"Host": host}).status_code == 200


def test_other_origins_are_refused_unless_cors_allows_them(registry):
    body = {"model": "none", "steps": 1}
    with make_client(registry) as client:
        res = client.post("/ldmkit/v1/generate", json=body, headers={"Origin": "https://evil.example"})
        assert res.status_code == 403 and "--cors https://evil.example" in res.json()["error"]
        assert client.post("/ldmkit/v1/generate", json=body, headers={"Origin": "http://testserver"}).status_code == 200
        res = client.get("/ldmkit/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in res.headers  # no CORS by default: the browser hides the answer
    with make_client(registry, cors="https://ok.example", token=TOKEN) as client:
        preflight = client.options("/ldmkit/v1/generate", headers={
            "Origin": "https://ok.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://ok.example"
        res = client.post("/ldmkit/v1/generate", json=body,
                          headers={"Origin": "https://ok.example", "Authorization": f"Bearer {TOKEN}"})
        assert res.status_code == 200 and res.headers["access-control-allow-origin"] == "https://ok.example"


def test_the_command_serves_until_interrupted(tiny_models):
    proc = subprocess.Popen([sys.executable, "-m", "ldmkit", "serve", f"emoji={tiny_models['none']}", "--port", "0",
                             "--token", TOKEN, "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline, line = time.time() + 60, ""
        while "serving" not in line:
            assert time.time() < deadline and proc.poll() is None, "the server did not start"
            line = proc.stdout.readline()
        url = line.split(" on ")[1].split("/ ")[0]
        assert line.startswith("serving emoji on http://127.0.0.1:") and "token required" in line
        models = httpx.get(f"{url}/ldmkit/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert [m["name"] for m in models.json()] == ["emoji"]
    finally:
        proc.send_signal(2)  # Ctrl-C
        assert proc.wait(30) == 130  # the CLI's exit status for Ctrl-C, after a clean shutdown


def test_the_socket_accepts_connections_before_the_server_runs():
    from ldmkit.cli.serve import _listen

    sock = _listen("127.0.0.1", 0)  # bound and listening when "serving ..." is printed, before uvicorn starts
    try:
        with socket.create_connection(sock.getsockname(), timeout=5):
            pass  # queued in the backlog: not refused
    finally:
        sock.close()

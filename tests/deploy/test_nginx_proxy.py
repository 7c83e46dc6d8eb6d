"""config/nginx/nginx.conf, run for real: `nginx -t`, then HTTP and websockets through it.

The repository's file is the config under test. Only what cannot work on this machine is
substituted: upstream `server` lines (docker DNS names -> local ports), the `listen` port and the
/tmp prefix of pid and temp paths. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

from tests.deploy.support import ROOT, Replica, processes
from tests.support.services import free_port, wait_port

NGINX_CONF = ROOT / "config" / "nginx" / "nginx.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    assert found, "nginx is missing; `make test` installs it (scripts/ensure-test-binaries.sh)"
    return found


def render_config(upstreams: dict[str, list[str]], port: int, prefix: Path) -> str:
    """The repository's nginx.conf with local upstreams, listen port and temp prefix."""
    text = NGINX_CONF.read_text()
    for name, servers in upstreams.items():
        block = re.search(r"(upstream " + name + r" \{\n)(.*?)(\n    \})", text, re.S)
        assert block, f"upstream {name} is missing from nginx.conf"
        body = block[2]
        lines = [line for line in body.splitlines() if not line.strip().startswith("server ")]
        original = [line for line in body.splitlines() if line.strip().startswith("server ")]
        assert original, f"upstream {name} has no server line"
        # Keep the parameters (max_fails, ...) of the repository's server line.
        parameters = original[0].strip().removeprefix("server ").split(" ", 1)[1:]
        suffix = (" " + parameters[0]) if parameters else ";"
        lines = [f"        server {address}{suffix}" for address in servers] + lines
        text = text[: block.start(2)] + "\n".join(lines) + text[block.end(2):]
    text, listens = re.subn(r"listen 8080 default_server;", f"listen 127.0.0.1:{port} default_server;", text)
    assert listens == 1, "nginx.conf should listen on 8080 exactly once"
    return text.replace("/tmp/", f"{prefix}/")


# --- websocket stand-ins ---------------------------------------------------------------------
# TODO(realtime): these two echo servers stand in for the app's /ws, which arrives with the
# realtime hub. Once it exists, point `vonix_ws` at the `replicas` fixture like `vonix_http`
# and speak the real protocol instead.

@dataclass
class EchoServer:
    name: str
    port: int
    server: Server
    thread: threading.Thread


def start_echo(name: str) -> EchoServer:
    def handler(connection: ServerConnection) -> None:
        headers = connection.request.headers if connection.request else {}
        try:
            for message in connection:
                connection.send(json.dumps({
                    "upstream": name,
                    "path": connection.request.path if connection.request else None,
                    "echo": message,
                    "x_forwarded_for": headers.get("X-Forwarded-For"),
                    "x_forwarded_proto": headers.get("X-Forwarded-Proto"),
                    "x_request_id": headers.get("X-Request-ID"),
                }))
        except ConnectionClosed:
            pass

    port = free_port()
    server = serve(handler, "127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, name=f"echo-{name}", daemon=True)
    thread.start()
    return EchoServer(name, port, server, thread)


@pytest.fixture(scope="module")
def echo_servers() -> Iterator[list[EchoServer]]:
    servers = [start_echo("ws-1"), start_echo("ws-2")]
    try:
        yield servers
    finally:
        for echo in servers:
            echo.server.shutdown()
            echo.thread.join(timeout=5)


@dataclass(frozen=True)
class Nginx:
    port: int
    config: Path
    prefix: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def nginx_test(config: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([nginx_binary(), "-t", "-c", str(config), "-p", f"{prefix}/"],
                          capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def nginx(
    tmp_path_factory: pytest.TempPathFactory, replicas: list[Replica], echo_servers: list[EchoServer]
) -> Iterator[Nginx]:
    prefix = tmp_path_factory.mktemp("nginx")
    prefix.chmod(0o755)  # workers run as nobody when the tests run as root
    port = free_port()
    config = prefix / "nginx.conf"
    config.write_text(render_config(
        {
            "vonix_http": [f"127.0.0.1:{r.port}" for r in replicas],
            "vonix_ws": [f"127.0.0.1:{e.port}" for e in echo_servers],
        },
        port, prefix,
    ))
    checked = nginx_test(config, prefix)
    assert checked.returncode == 0, checked.stderr
    with processes() as running, (prefix / "nginx.out").open("w") as output:
        running.append(subprocess.Popen(
            [nginx_binary(), "-c", str(config), "-p", f"{prefix}/", "-g", "daemon off;"],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        ))
        wait_port(port)
        yield Nginx(port, config, prefix)


# --- configuration -----------------------------------------------------------------------------

def test_nginx_t_accepts_the_repository_config(tmp_path: Path) -> None:
    config = tmp_path / "nginx.conf"
    config.write_text(render_config(
        {"vonix_http": ["127.0.0.1:1", "127.0.0.1:2"], "vonix_ws": ["127.0.0.1:3", "127.0.0.1:4"]},
        free_port(), tmp_path,
    ))
    result = nginx_test(config, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr


def test_config_limits_match_the_app_and_keep_websockets_open() -> None:
    from server.settings import Settings

    text = NGINX_CONF.read_text()
    assert "client_max_body_size 1m;" in text
    assert Settings.model_fields["max_body_bytes"].default == 1024 * 1024, (
        "MAX_BODY_BYTES' default moved: update client_max_body_size in nginx.conf"
    )
    ws = re.search(r"location /ws \{(.*?)\n        \}", text, re.S)
    assert ws, "nginx.conf has no /ws location"
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", ws[1])
    assert read_timeout and int(read_timeout[1]) >= 3600
    assert "proxy_pass http://vonix_ws;" in ws[1]
    assert "least_conn;" in re.search(r"upstream vonix_ws \{(.*?)\}", text, re.S)[1]
    for zone in ("vonix_api", "vonix_auth", "vonix_ws_connect"):
        assert f"limit_req_zone $binary_remote_addr zone={zone}:" in text


# --- traffic -----------------------------------------------------------------------------------

def test_http_reaches_both_replicas(nginx: Nginx, replicas: list[Replica]) -> None:
    seen = set()
    with httpx.Client(base_url=nginx.url, timeout=5) as client:
        for _ in range(6):
            response = client.get("/api/health")
            assert response.status_code == 200
            seen.add(response.json()["instance"])
            # Exactly one copy of each security header: the app's, not doubled by nginx.
            assert response.headers.get_list("x-content-type-options") == ["nosniff"]
            assert response.headers.get_list("x-frame-options") == ["DENY"]
            assert len(response.headers.get_list("content-security-policy")) == 1
            assert response.headers["server"] == "nginx", "server_tokens off hides the version"
    assert seen == {r.name for r in replicas}


def test_websocket_upgrade_reaches_both_upstreams(nginx: Nginx) -> None:
    uri = f"ws://127.0.0.1:{nginx.port}/ws"
    # Both held open at once: least_conn must put the second on the other upstream.
    with connect(uri, open_timeout=5) as first, connect(uri, open_timeout=5) as second:
        assert first.response is not None and first.response.status_code == 101
        answers = []
        for connection, text in ((first, "hello"), (second, "world")):
            connection.send(text)
            answers.append(json.loads(connection.recv(timeout=5)))
        # Messages flow both ways over the upgraded connection, more than once.
        first.send("again")
        answers.append(json.loads(first.recv(timeout=5)))
    assert {a["upstream"] for a in answers} == {"ws-1", "ws-2"}
    assert answers[0]["upstream"] == answers[2]["upstream"], "a socket stays on its upstream"
    assert [a["echo"] for a in answers] == ["hello", "world", "again"]
    for answer in answers:
        assert answer["path"] == "/ws"
        assert answer["x_forwarded_for"] == "127.0.0.1"
        assert answer["x_forwarded_proto"] == "http"
        assert answer["x_request_id"], "nginx sends a request id upstream"


def test_metrics_are_not_public(nginx: Nginx, replicas: list[Replica]) -> None:
    assert httpx.get(f"{nginx.url}/metrics", timeout=5).status_code == 404
    assert httpx.get(f"{replicas[0].url}/metrics", timeout=5).status_code == 200


def test_oversized_body_is_refused_at_the_edge_in_the_app_error_shape(nginx: Nginx) -> None:
    # A raw request: nginx answers from the headers alone, before any body is sent.
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/anything HTTP/1.1\r\nHost: vonix\r\nContent-Type: application/json\r\n"
            b"X-Request-ID: big-body-1\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n"
        )
        # Read the answer by its Content-Length: nginx then lingers for the body we never send.
        raw = b""
        while b"\r\n\r\n" not in raw:
            raw += sock.recv(65536)
        head, _, body = raw.partition(b"\r\n\r\n")
        length = int(re.search(rb"\r\nContent-Length: (\d+)", head, re.I)[1])
        while len(body) < length:
            body += sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 413")
    assert b"\r\nX-Content-Type-Options: nosniff" in head
    error = json.loads(body)["error"]
    assert error["code"] == "payload_too_large"
    assert error["request_id"] == "big-body-1"


def test_auth_routes_are_rate_limited(nginx: Nginx) -> None:
    statuses = []
    with httpx.Client(base_url=nginx.url, timeout=5) as client:
        for _ in range(8):
            response = client.post("/api/auth/login", json={})
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.json()["error"]["code"] == "rate_limited"
                assert response.headers["x-content-type-options"] == "nosniff"
            time.sleep(0.01)
    # 1 + burst 5 go through (to the app, which has no such route yet), then 429.
    assert 429 not in statuses[:6], statuses
    assert statuses[-1] == 429, statuses

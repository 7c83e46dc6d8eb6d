"""config/nginx/nginx.conf, run for real: `nginx -t`, then HTTP and websockets through it.

The repository's file is the config under test. Only what cannot work on this machine is
substituted: upstream `server` lines (docker DNS names -> local ports), the `listen` port and the
/tmp prefix of pid and temp paths. Both upstreams are the two real `vonix serve` replicas of the
`replicas` fixture (one SQLite file, one Redis). Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

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
def nginx(tmp_path_factory: pytest.TempPathFactory, replicas: list[Replica]) -> Iterator[Nginx]:
    prefix = tmp_path_factory.mktemp("nginx")
    prefix.chmod(0o755)  # workers run as nobody when the tests run as root
    port = free_port()
    config = prefix / "nginx.conf"
    config.write_text(render_config(
        {
            "vonix_http": [f"127.0.0.1:{r.port}" for r in replicas],
            "vonix_ws": [f"127.0.0.1:{r.port}" for r in replicas],
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
    ws_upstream = re.search(r"upstream vonix_ws \{(.*?)\}", text, re.S)[1]
    assert "least_conn;" in ws_upstream
    # Without a shared zone every worker process balances on its own connection counts.
    assert re.search(r"^\s*zone \w+ \d+k;", ws_upstream, re.M), "upstream vonix_ws needs a zone"
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


# --- websockets: the app's real /ws -----------------------------------------------------------

def ws_connect(nginx: Nginx, token: str | None) -> ClientConnection:
    """A websocket through nginx; the client offers permessage-deflate, as browsers do."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return connect(f"ws://127.0.0.1:{nginx.port}/ws", additional_headers=headers, open_timeout=5,
                   close_timeout=5)


def request(connection: ClientConnection, frame: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one protocol frame; return the reply with its id. A server frame may hold several
    JSON objects, one per line (the writer coalesces); pushes in between are skipped."""
    connection.send(json.dumps(frame))
    deadline = time.monotonic() + timeout
    while True:
        raw = connection.recv(timeout=max(0.01, deadline - time.monotonic()))
        for line in str(raw).split("\n"):
            message = json.loads(line)
            if message.get("id") == frame["id"]:
                return message


def open_websockets(replica: Replica) -> float:
    """The replica's own `vonix_ws_connections` gauge, read directly (nginx hides /metrics)."""
    exposition = httpx.get(f"{replica.url}/metrics", timeout=5).text
    match = re.search(r"^vonix_ws_connections(?:\{[^}]*\})? (\S+)$", exposition, re.M)
    assert match, "the replica exposes no vonix_ws_connections sample"
    return float(match[1])


def wait_for_gauges(replicas: list[Replica], condition: Any, timeout: float = 10.0) -> list[float]:
    deadline = time.monotonic() + timeout
    while True:
        values = [open_websockets(r) for r in replicas]
        if condition(values) or time.monotonic() > deadline:
            return values
        time.sleep(0.1)


def close_code(connection: ClientConnection, timeout: float = 5.0) -> int | None:
    """Read until the server closes; the close code it sent."""
    with contextlib.suppress(ConnectionClosed):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            connection.recv(timeout=max(0.01, deadline - time.monotonic()))
    return connection.close_code


SOCKETS = 6


def test_websockets_through_nginx_reach_both_replicas(
    nginx: Nginx, replicas: list[Replica], bot_token: str
) -> None:
    # A clean slate, so the gauges below count exactly this test's sockets.
    baseline = wait_for_gauges(replicas, lambda values: sum(values) == 0)
    assert baseline == [0, 0], f"websockets left open on the replicas: {baseline}"
    with contextlib.ExitStack() as stack:
        sockets = []
        for index in range(SOCKETS):
            connection = stack.enter_context(ws_connect(nginx, bot_token))
            assert connection.response is not None and connection.response.status_code == 101
            # uvicorn runs with per-message-deflate off: the client's offer is declined.
            assert connection.request is not None
            assert "permessage-deflate" in connection.request.headers["Sec-WebSocket-Extensions"]
            assert "Sec-WebSocket-Extensions" not in connection.response.headers
            pong = request(connection, {"id": 1, "op": "ping"})
            assert pong == {"id": 1, "ok": True, "pong": True}, pong
            subscribed = request(connection, {"id": 2, "op": "subscribe", "channel": "room:general"})
            assert subscribed["ok"] is True and subscribed["channel"] == "room:general", subscribed
            # Messages keep flowing both ways on the same upgraded connection.
            again = request(connection, {"id": 3, "op": "ping"})
            assert again == {"id": 3, "ok": True, "pong": True}, (index, again)
            sockets.append(connection)
        # While they are open, each replica's own gauge shows its share: least_conn (with the
        # shared zone) spreads sockets held open at once evenly over the two.
        counts = wait_for_gauges(replicas, lambda values: sum(values) == SOCKETS)
        assert sum(counts) == SOCKETS, counts
        assert all(count > 0 for count in counts), f"a replica served no websocket: {counts}"
        assert abs(counts[0] - counts[1]) <= 1, f"least_conn should balance held sockets: {counts}"
    # Both replicas authenticated the bot (the Authorization header crossed nginx) as the same
    # user: they read one database.
    users = {}
    for replica in replicas:
        events = [json.loads(line) for line in replica.log.read_text().splitlines() if line.startswith("{")]
        users[replica.name] = {e["user_id"] for e in events if e.get("event") == "ws_connected" and e.get("user_id")}
        assert users[replica.name], f"{replica.name} logged no authenticated websocket"
    assert len(set().union(*users.values())) == 1, users
    closed = wait_for_gauges(replicas, lambda values: sum(values) == 0)
    assert closed == [0, 0], f"closed sockets still counted: {closed}"


def test_websocket_with_a_wrong_token_is_refused_with_the_app_close_code(nginx: Nginx) -> None:
    with ws_connect(nginx, "vxb_" + "0" * 43) as connection:
        assert close_code(connection) == 4001  # realtime/errors.py BAD_AUTH


def test_websocket_frame_limits_app_64_kib_uvicorn_1_mib(nginx: Nginx, bot_token: str) -> None:
    # Over the protocol's 64 KiB, under uvicorn's ws_max_size: the app answers with its own code.
    with ws_connect(nginx, bot_token) as connection:
        assert request(connection, {"id": 1, "op": "ping"})["ok"] is True
        connection.send(json.dumps({"id": 2, "op": "ping", "pad": "x" * 100_000}))
        error = json.loads(str(connection.recv(timeout=5)).split("\n")[0])
        assert error["ok"] is False and error["error"]["code"] == "message_too_large", error
        assert close_code(connection) == 4009  # FRAME_TOO_LARGE
    # Over uvicorn's ws_max_size (1 MiB) the websocket layer refuses the frame from its header
    # alone, before the app sees it: close 1009. Only the header is sent (a raw socket), since
    # streaming a real megabyte into a closing connection ends in a reset instead of a close frame.
    assert raw_close_code_for_frame_header(nginx, bot_token, 1024 * 1024 + 1) == 1009


def raw_close_code_for_frame_header(nginx: Nginx, token: str, length: int) -> int:
    """Upgrade by hand, send a masked text frame header announcing `length` bytes (no payload),
    and return the code of the close frame the server answers with."""
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=5) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: vonix\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
        head, _, received = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        # FIN + text; MASK + 127: a 64-bit length follows; then the 4-byte masking key.
        sock.sendall(bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big") + b"\x00\x00\x00\x00")
        while True:
            while len(received) < 2:
                chunk = sock.recv(4096)
                assert chunk, "connection ended without a close frame"
                received += chunk
            opcode, size = received[0] & 0x0F, received[1] & 0x7F
            assert size < 126, "unexpected long server frame"
            while len(received) < 2 + size:
                received += sock.recv(4096)
            payload, received = received[2:2 + size], received[2 + size:]
            if opcode == 0x8:  # close
                return int.from_bytes(payload[:2], "big")


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

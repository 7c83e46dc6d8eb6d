"""TRUSTED_PROXIES through the real `vonix serve` (uvicorn's proxy-header handling included, which
rewrites the peer address before the app sees it): a peer that is not a trusted proxy cannot move
its rate-limit key or its lockout key by sending X-Forwarded-For (or Forwarded), and the same
requests from a trusted proxy do count per forwarded client, which shows the check can tell the two
apart (docs/deployment.md, "Behind a reverse proxy: TRUSTED_PROXIES")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fresh_sqlite_url
from tests.support.accounts import PASSWORD
from tests.support.replica import Replica

LIMITS = {"RATE_LIMIT_READ": "3/60", "RATE_LIMIT_AUTH": "100/60", "IP_FAILURE_LIMIT": "3",
          "LOCKOUT_THRESHOLD": "50", "MAINTENANCE_ENABLED": "false"}


def forged(n: int) -> dict[str, str]:
    """What a client (or a proxy that appends instead of overwriting) may send: a new address each time."""
    return {"X-Forwarded-For": f"198.51.100.{n}", "Forwarded": f"for=198.51.100.{n}", "X-Real-IP": f"198.51.100.{n}"}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[Replica] = []

    def start(env: dict[str, Any]) -> Replica:
        replica = Replica({**LIMITS, **env}, log_path=tmp_path / f"serve-{len(started)}.log").start()
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.stop()


async def probe(base_url: str) -> tuple[list[int], list[str]]:
    """Four reads and four failed sign-ins (each for another name), each with a new forged address."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        reads = [(await client.get("/api/rooms", headers=forged(n))).status_code for n in range(4)]
        logins = []
        for n in range(4):
            response = await client.post("/api/auth/login", headers=forged(n),
                                         json={"login": f"nobody_{n}", "password": PASSWORD})
            logins.append(response.json()["error"]["code"])
    return reads, logins


async def test_an_untrusted_peer_cannot_move_its_keys(backend: dict[str, Any], serve: Any) -> None:
    replica = serve({**backend, "TRUSTED_PROXIES": "10.9.9.9"})  # the test's 127.0.0.1 is not a proxy
    reads, logins = await probe(replica.base_url)
    assert reads == [401, 401, 401, 429], "one rate-limit key: the real peer's"
    assert logins == ["invalid_credentials"] * 3 + ["account_locked"], "one lockout key: the real peer's"


async def test_a_trusted_proxy_is_believed(sqlite_template: Path, tmp_path: Path, serve: Any) -> None:
    replica = serve({"DATABASE_URL": fresh_sqlite_url(sqlite_template, tmp_path)})  # trusts 127.0.0.1 (default)
    reads, logins = await probe(replica.base_url)
    assert reads == [401] * 4, "four forwarded clients, four rate-limit keys"
    assert logins == ["invalid_credentials"] * 4, "four forwarded clients, four lockout keys"

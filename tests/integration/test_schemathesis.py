"""schemathesis against a real server, in both backend modes: the API keeps its OpenAPI contract.

Every operation of `/api/openapi.json` gets generated valid and invalid input (schemathesis'
examples, coverage and fuzzing phases, plus its stateful phase following the document's links) and
must answer only the statuses it documents, in the documented error shape with a documented code,
never a 5xx. Requests carry an admin's bearer token (every operation is reachable); schemathesis'
`ignored_auth` check also replays them without it and wants the documented 401. A second, smaller
run with a plain member's token shows the admin operations refuse members with the documented 403.

The run is bounded (few examples per operation, a time budget per phase) so the suite stays fast;
`--seed` makes a failure reproducible. The CLI runs in a subprocess: the server lives in this
test's event loop, which must keep serving while schemathesis (synchronous) sends its requests.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.support.accounts import bearer, login, make_admin, register
from tests.support.appserver import AppServer

pytestmark = pytest.mark.slow

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
SEED = 20_2026
MAX_EXAMPLES = 8

# Operations left out of the run (operationId), each with the reason or the finding it waits for.
EXCLUDED = (
    "auth.logout",  # ends the fuzzer's own session: every later request would answer 401 (test_auth_accounts)
    # revokes the fuzzer's own session (the stateful phase links GET /api/auth/sessions to it): every
    # later operation would only ever answer 401
    "auth.revoke_session",
)
# Known server bugs on the embedded backend (none today; the non-ASCII group name clash it found is
# test_groups_events.py::test_a_non_ascii_group_name_taken_again_is_a_conflict).
EXCLUDED_EMBEDDED: tuple[str, ...] = ()
# 503 is a documented answer of a few operations (push disabled, cache or limiter not running);
# status_code_conformance still fails any 503 an operation does not document.
CONFIG = '''
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]
'''
# `negative_data_rejection`: bodies are validated strictly (server/jsonio.py), so input the schema
# calls invalid (`false` for an integer, "5" for a number) must be refused.
CHECKS = ",".join((
    "not_a_server_error", "negative_data_rejection", "status_code_conformance", "content_type_conformance",
    "response_schema_conformance", "missing_required_header", "ignored_auth",
    "use_after_free", "ensure_resource_availability",
))


@pytest.fixture
async def fuzz_server(backend: dict[str, Any]) -> AsyncIterator[AppServer]:
    # Rate limits off: every operation documents 429 `rate_limited`, but a fuzzer that is limited
    # after a hundred writes tests nothing else (the limits have their own tests).
    async with AppServer(make_settings(RATE_LIMIT_ENABLED="false", **backend)) as server:
        yield server


async def _tokens(server: AppServer) -> tuple[str, str]:
    async with server.client() as client:
        await register(client, "fuzz_admin")
        await register(client, "fuzz_member")
        await make_admin(server, "fuzz_admin")
        admin = (await login(client, "fuzz_admin"))["access_token"]
        member = (await login(client, "fuzz_member"))["access_token"]
        # Some data to find: a room and a post the generated ids may hit.
        await client.post("/api/rooms", json={"name": "fuzzroom", "topic": "x"}, headers=bearer(admin))
        await client.post("/api/posts", json={"content": "hello"}, headers=bearer(member))
    return admin, member


async def schemathesis_run(server: AppServer, token: str, *args: str, budget: float,
                           config: Path, excluded: tuple[str, ...] = EXCLUDED) -> tuple[int, str]:
    command = [
        SCHEMATHESIS, "--config-file", str(config), "run", f"{server.base_url}/api/openapi.json",
        "--url", server.base_url,
        "-H", f"Authorization: Bearer {token}", "--checks", CHECKS, "--seed", str(SEED),
        "--max-examples", str(MAX_EXAMPLES), "--workers", "1", "--request-timeout", "10",
        "--suppress-health-check", "all", "--no-shrink", "--output-truncate", "false",
        *(arg for operation_id in excluded for arg in ("--exclude-operation-id", operation_id)),
        *args,
    ]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    # Run in the temp dir: schemathesis keeps its replay files in ./.schemathesis.
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT, env=env, cwd=config.parent)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=budget)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, output.decode(errors="replace")


@pytest.mark.timeout(240)
async def test_every_operation_keeps_its_contract(fuzz_server: AppServer, backend: dict[str, Any],
                                                  tmp_path: Path) -> None:
    admin, member = await _tokens(fuzz_server)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    excluded = EXCLUDED + (EXCLUDED_EMBEDDED if "REDIS_URL" not in backend else ())
    code, output = await schemathesis_run(fuzz_server, admin, "--phases", "coverage,fuzzing,stateful",
                                          "--max-time", "30", budget=150, config=config, excluded=excluded)
    assert code == 0, output[-20000:]
    assert "Tested: 1" in output, output[-3000:]  # operations were really run (Tested: 1xx)

    # A member: every admin operation answers the documented 403 (or 401/404/422), never 2xx.
    code, output = await schemathesis_run(fuzz_server, member, "--phases", "coverage",
                                          "--include-path-regex", "^/api/admin/", budget=60, config=config)
    assert code == 0, output[-20000:]

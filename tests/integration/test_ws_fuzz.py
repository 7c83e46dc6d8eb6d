"""Property-based fuzzing of websocket frames against a real server process.

Whatever arrives — broken JSON, wrong types, unknown ops, huge numbers, binary junk — the server
answers with an error frame or closes with a documented code, never crashes, never logs an
unexpected exception, and a bystander connection keeps working throughout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from realtime import errors, protocol
from tests.support.accounts import PASSWORD
from tests.support.replica import Replica

pytestmark = pytest.mark.slow
DOCUMENTED_CLOSE_CODES = {d.code for d in errors.ALL_DISCONNECTS}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
channels = st.one_of(
    st.sampled_from(["room:general", "room:nope", "dm:1:2", "user:1", "user:999", "bot:x", "nowhere", "", "a:b"]),
    st.text(max_size=200),
)
ops = st.one_of(st.sampled_from(sorted(protocol.OPS)), st.text(max_size=12))
frames = st.one_of(
    st.fixed_dictionaries(
        {"id": st.one_of(st.integers(min_value=-5, max_value=2**60), st.text(max_size=5), st.none(), st.booleans()),
         "op": ops},
        optional={"channel": channels, "data": json_values, "nonce": st.text(max_size=80),
                  "since": st.one_of(json_values, st.fixed_dictionaries(
                      {"offset": st.integers(min_value=-3, max_value=2**40), "epoch": st.text(max_size=70)})),
                  "limit": st.one_of(st.integers(min_value=-3, max_value=5000), json_values),
                  "token": st.text(max_size=50)},
    ).map(lambda frame: json.dumps(frame)),
    st.text(max_size=300),
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value)),
)


class Fuzzer:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.connection: ClientConnection | None = None
        self.closes: list[int | None] = []

    def socket(self) -> ClientConnection:
        if self.connection is None:
            self.connection = connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"},
                                      compression=None, open_timeout=10).__enter__()
        return self.connection

    def send(self, frame: str | bytes) -> None:
        connection = self.socket()
        try:
            connection.send(frame)
            reply = connection.recv(timeout=3)
            for line in (reply if isinstance(reply, str) else reply.decode()).split("\n"):
                parsed = orjson.loads(line)  # every answer is valid JSON
                assert isinstance(parsed, dict)
        except TimeoutError:
            pass  # e.g. a typing push that nobody answers twice
        except ConnectionClosed:
            code = connection.close_code
            self.closes.append(code)
            assert code in DOCUMENTED_CLOSE_CODES, f"undocumented close code {code}"
            self.connection = None


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("fuzz")
    log = directory / "server.log"
    replica = Replica({"DATABASE_URL": f"sqlite:///{directory}/fuzz.db", "WS_PUBLISH_RATE": 200,
                       "WS_PUBLISH_BURST": 200, "MAINTENANCE_ENABLED": "false"}, log_path=log).start()
    try:
        tokens = {}
        with httpx.Client(base_url=replica.base_url, timeout=10) as client:
            for name in ("Fuzzy", "Bystander"):
                client.post("/api/auth/register", json={"username": name, "email": f"{name}@example.com",
                                                        "password": PASSWORD}).raise_for_status()
                tokens[name] = client.post("/api/auth/login", json={"login": name, "password": PASSWORD}
                                           ).json()["access_token"]
        url = replica.base_url.replace("http://", "ws://") + "/ws"
        bystander = connect(url, additional_headers={"Authorization": f"Bearer {tokens['Bystander']}"},
                            compression=None).__enter__()
        bystander.send('{"id":1,"op":"subscribe","channel":"room:general"}')
        assert orjson.loads(str(bystander.recv(timeout=5)).split("\n")[0])["ok"]
        yield {"replica": replica, "url": url, "fuzzer": Fuzzer(url, tokens["Fuzzy"]), "bystander": bystander,
               "log": log}
        bystander.close()
    finally:
        replica.stop()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(frame=frames)
def test_random_frames_never_hurt_the_server(fuzz_target: dict[str, Any], frame: str | bytes) -> None:
    fuzz_target["fuzzer"].send(frame)
    assert fuzz_target["replica"].process.poll() is None, "the server process died"


def test_after_fuzzing_everything_still_works(fuzz_target: dict[str, Any]) -> None:
    bystander: ClientConnection = fuzz_target["bystander"]
    bystander.send('{"id":2,"op":"ping"}')
    replies = []
    while True:  # skip pushes (joins, typing, messages) the fuzzer caused meanwhile
        for line in str(bystander.recv(timeout=5)).split("\n"):
            replies.append(orjson.loads(line))
        if any(r.get("id") == 2 for r in replies):
            break
    assert next(r for r in replies if r.get("id") == 2)["pong"] is True
    log = Path(fuzz_target["log"]).read_text()
    assert "Traceback" not in log and "ws_op_failed" not in log, "an unexpected exception was logged"

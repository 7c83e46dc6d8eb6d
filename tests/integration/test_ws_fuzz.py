"""Property-based fuzzing of a live websocket connection, on both backends (hypothesis state machine).

One real server per backend; hypothesis drives a connection through sequences of good and bad
frames: broken JSON, wrong types, unknown ops, huge numbers, lone surrogates and invalid UTF-8,
binary frames, pipelined bursts of interleaved ops, frames over the 64 KiB limit and over the
websocket layer's 1 MiB. Properties:
- every frame gets exactly one answer: its reply (by id), or an error reply with a documented
  code (`id: null` when the frame had no usable id), or the connection closes with a documented
  code (4009 for an oversized frame, 1009 over 1 MiB, 4001 after a bad `auth` token);
- a well-behaved bystander subscribed to the channel receives every accepted publish, once;
- every accepted publish is stored exactly once (read back through the REST history), including
  publishes resent with their nonce after the answer was lost;
- the server logs no unexpected exception.

The state machine runs in a worker thread with the sync `websockets` client while the server runs
in the test's event loop, so the whole property shares one server (budget: a few seconds a backend).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from realtime import errors, protocol
from tests.conftest import make_settings
from tests.contract.schemas import reply_error_codes
from tests.support.accounts import login, register
from tests.support.appserver import AppServer

pytestmark = pytest.mark.slow
CHANNEL = "room:general"  # the good publishes' channel; fuzzed frames never name it
WS_LAYER_TOO_BIG = 1009  # the websocket layer's own close for a frame over ws_max_size (1 MiB)
DOCUMENTED_CLOSES = {d.code for d in errors.ALL_DISCONNECTS} | {WS_LAYER_TOO_BIG}
CODES = reply_error_codes()
MAX_EXAMPLES = 12
STEPS = 25

NASTY = ["\x00", "\u202e", "\u2066", "\ufeff", "\u2028", "\ud800", "\udfff", "\U0001F44D", "\n", '"', "\\"]
text = st.lists(st.one_of(st.sampled_from(NASTY), st.characters()), max_size=24).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4), max_leaves=12)
channels = st.one_of(st.sampled_from(["room:nope", "room:", "bot:fuzzy", "bot:other", "dm:1:2", "user:1",
                                      "user:999", "status:servers", "live:x:1", "nowhere", "", "a:b"]), text)
fields = {"channel": channels, "data": json_values, "nonce": text, "limit": json_values, "token": text,
          "offset": st.one_of(st.integers(min_value=-3, max_value=2**70), json_values), "emoji": text,
          "presence": json_values, "channels": st.lists(channels, max_size=3) | json_values,
          "since": st.one_of(json_values, st.fixed_dictionaries(
              {"offset": st.integers(min_value=-3, max_value=2**70), "epoch": text}))}
frame_objects = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(min_value=-5, max_value=2**60), text, st.none(), st.booleans()),
     "op": st.one_of(st.sampled_from(sorted(protocol.OPS - {"auth", "refresh"})), text)},
    optional=fields)
deep = st.integers(min_value=2, max_value=1200).map(
    lambda d: {"id": 1, "op": "publish", "channel": "bot:fuzzy", "data": json.loads("[" * d + "]" * d)})
bad_frames = st.one_of(
    frame_objects.map(lambda f: json.dumps(f, ensure_ascii=False)),
    frame_objects.map(lambda f: json.dumps(f, ensure_ascii=False).encode("utf-8", "surrogatepass")),  # binary
    deep.map(json.dumps),
    text, st.binary(max_size=200), json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
    st.sampled_from(['{"id":1,"op":"auth","token":"not-a-real-token-123"}', '{"id":2,"op":"refresh","token":"x"}',
                     '{"id":1e400,"op":"ping"}', '{"id":' + "9" * 400 + ',"op":"ping"}', "[" * 5000, "\x00"]))


def _wire(frame: str | bytes) -> str | bytes:
    """What the client library can send: text frames must be UTF-8, so text with a lone surrogate
    goes as a binary frame (the server reads binary frames as UTF-8 JSON too)."""
    if isinstance(frame, str):
        try:
            frame.encode()
        except UnicodeEncodeError:
            return frame.encode("utf-8", "surrogatepass")
    return frame


def _expected(frame: str | bytes) -> tuple[int | None, str | None]:
    """(request id the answer carries, error code parse gives or None) for one frame."""
    raw = frame if isinstance(frame, bytes) else frame.encode("utf-8", "surrogatepass")
    if len(raw) > protocol.MAX_FRAME_BYTES:
        return None, errors.MESSAGE_TOO_LARGE
    try:
        command = protocol.parse(raw)
    except protocol.FrameError as exc:
        return exc.request_id, exc.code
    return command.id, None


def open_socket(url: str, token: str) -> ClientConnection:
    """A sync client connection (websockets wants `connect` entered as a context manager; the
    connection is closed by the state machine, whose life spans several calls)."""
    return connect(url, additional_headers={"Authorization": f"Bearer {token}"}, compression=None,
                   max_size=2**22, open_timeout=10).__enter__()


class Target:
    """What the state machine needs from the test: URLs, tokens, and what it accepted so far."""

    def __init__(self, ws_url: str, token: str, bystander: ClientConnection) -> None:
        self.ws_url = ws_url
        self.token = token
        self.bystander = bystander
        self.accepted: dict[str, int] = {}  # text -> offset, every publish the server acknowledged
        self.delivered: Counter[str] = Counter()  # texts the bystander received
        self.closes: Counter[int] = Counter()
        self.ids = itertools.count(10**12)


class WsFuzz(RuleBasedStateMachine):
    target: Target

    def __init__(self) -> None:
        super().__init__()
        self.conn: ClientConnection | None = None
        self.published: list[tuple[str, str]] = []  # (text, nonce) of this run's good publishes
        self.unanswered: list[tuple[str, str]] = []  # publishes cut off by a close: resend with their nonce
        self.sent_over_a_mib = False

    # --- plumbing ------------------------------------------------------------------------------
    def socket(self) -> ClientConnection:
        if self.conn is None:
            self.conn = open_socket(self.target.ws_url, self.target.token)
        return self.conn

    def exchange(self, frames: list[str | bytes], expect_close: set[int] | None = None,
                 answered: bool = True) -> dict[int, dict[str, Any]]:
        """Send `frames` back to back, then read until each has its answer (or the socket closes);
        with `expect_close`, go on reading until the close (`answered=False`: no answer first)."""
        conn = self.socket()
        # Per request id, what parse says the answer must be: an error code, or None (a valid command:
        # any reply). A burst may repeat an id: a multiset, matched as answers come (in any order).
        wanted: dict[int, Counter[str | None]] = {}
        nulls: list[str] = []
        for frame in frames if answered else ():
            request_id, code = _expected(frame)
            if request_id is None:
                nulls.append(code or "")
            else:
                wanted.setdefault(request_id, Counter())[code] += 1
        answers: dict[int, dict[str, Any]] = {}
        null_answers: list[str] = []
        try:
            for frame in frames:
                conn.send(_wire(frame))
            while any(+expected for expected in wanted.values()) or len(null_answers) < len(nulls):
                raw = conn.recv(timeout=10)
                for line in (raw if isinstance(raw, str) else raw.decode()).split("\n"):
                    message = orjson.loads(line)
                    assert isinstance(message, dict), message
                    if "ok" not in message:
                        assert isinstance(message.get("op"), str), f"neither reply nor push: {message}"
                        continue  # a push from something the fuzzer subscribed to
                    if message["ok"] is not True:
                        assert message["error"]["code"] in CODES, f"undocumented error code: {message}"
                        assert message["error"]["message"]
                    if message["id"] is None:
                        assert message["ok"] is False
                        null_answers.append(message["error"]["code"])
                        continue
                    expected = wanted.get(message["id"], Counter())
                    code = None if message["ok"] else message["error"]["code"]
                    if code is not None and expected[code] > 0:
                        expected[code] -= 1
                    else:
                        assert expected[None] > 0, f"an answer nobody asked for, or the wrong code: {message}"
                        expected[None] -= 1
                    answers[message["id"]] = message
            assert sorted(null_answers) == sorted(nulls), (null_answers, nulls)
            if expect_close is not None:
                while True:  # nothing more may come but the close
                    raw = conn.recv(timeout=10)
                    assert all("ok" not in orjson.loads(line) for line in str(raw).split("\n")), raw
        except TimeoutError:
            raise AssertionError(f"no answer within 10 s to {frames!r:.300}; still waiting for {wanted}") from None
        except ConnectionClosed:
            code = conn.close_code
            assert code in DOCUMENTED_CLOSES, f"undocumented close code {code}"
            if expect_close is not None:
                assert code in expect_close, f"closed with {code}, expected {expect_close}"
            self.target.closes[code] += 1  # type: ignore[index]
            self.conn = None
            return answers
        assert expect_close is None, f"expected a close with {expect_close}"
        return answers

    def good_publish(self, text: str, nonce: str, request_id: int, binary: bool = False) -> str | bytes:
        frame = orjson.dumps({"id": request_id, "op": "publish", "channel": CHANNEL, "data": {"text": text},
                              "nonce": nonce})
        return frame if binary else frame.decode()

    def record(self, answers: dict[int, dict[str, Any]], sent: list[tuple[int, str, str]]) -> None:
        for request_id, body, nonce in sent:
            answer = answers.get(request_id)
            if answer is None:
                self.unanswered.append((body, nonce))  # cut off by a close: unknown whether stored
                continue
            assert answer["ok"], answer
            if body in self.target.accepted:  # a resend: the nonce makes it the same message
                assert answer["offset"] == self.target.accepted[body]
            self.target.accepted[body] = answer["offset"]

    def new_publish(self, binary: bool) -> tuple[int, str, str, str | bytes]:
        request_id = next(self.target.ids)
        body, nonce = f"fuzz-{request_id}", f"n-{request_id}"
        self.published.append((body, nonce))
        return request_id, body, nonce, self.good_publish(body, nonce, request_id, binary)

    # --- rules ---------------------------------------------------------------------------------
    @rule(binary=st.booleans())
    def publish(self, binary: bool) -> None:
        request_id, body, nonce, frame = self.new_publish(binary)
        self.record(self.exchange([frame]), [(request_id, body, nonce)])

    @rule(frame=bad_frames)
    def bad_frame(self, frame: str | bytes) -> None:
        self.exchange([frame])

    @rule(bad=st.lists(bad_frames, min_size=1, max_size=4), good=st.integers(min_value=1, max_value=4),
          order=st.randoms(use_true_random=False))
    def interleaved_burst(self, bad: list[str | bytes], good: int, order: Any) -> None:
        """Pipelined: good publishes, pings and bad frames sent back to back, answered by id."""
        publishes = [self.new_publish(binary=order.random() < 0.3) for _ in range(good)]
        frames: list[str | bytes] = [*bad, *(p[3] for p in publishes),
                                     f'{{"id":{next(self.target.ids)},"op":"ping"}}',
                                     f'{{"id":{next(self.target.ids)},"op":"history","channel":"{CHANNEL}"}}']
        order.shuffle(frames)
        self.record(self.exchange(frames), [(p[0], p[1], p[2]) for p in publishes])

    @rule(size=st.sampled_from([protocol.MAX_FRAME_BYTES + 1, 100_000]), binary=st.booleans())
    def oversized_frame(self, size: int, binary: bool) -> None:
        padding = "x" * size
        frame = f'{{"id":1,"op":"publish","channel":"{CHANNEL}","data":{{"text":"{padding}"}}}}'
        self.exchange([frame.encode() if binary else frame], expect_close={errors.FRAME_TOO_LARGE.code})

    @precondition(lambda self: not self.sent_over_a_mib)  # 1 MiB a time: once a run is enough
    @rule()
    def frame_over_the_websocket_limit(self) -> None:
        self.sent_over_a_mib = True
        self.exchange(['{"id":1,"op":"ping","pad":"' + "y" * (1024 * 1024) + '"}'], expect_close={WS_LAYER_TOO_BIG},
                      answered=False)

    @precondition(lambda self: bool(self.published))
    @rule(data=st.data())
    def resend_with_nonce(self, data: st.DataObject) -> None:
        """A client that lost an answer resends the same publish: stored once, same offset."""
        body, nonce = data.draw(st.sampled_from(self.published))
        request_id = next(self.target.ids)
        self.record(self.exchange([self.good_publish(body, nonce, request_id)]), [(request_id, body, nonce)])

    @invariant()
    def the_server_answers_a_ping(self) -> None:
        request_id = next(self.target.ids)
        assert self.exchange([f'{{"id":{request_id},"op":"ping"}}'])[request_id]["pong"] is True

    def teardown(self) -> None:
        for body, nonce in self.unanswered:  # recover lost answers the documented way
            request_id = next(self.target.ids)
            self.record(self.exchange([self.good_publish(body, nonce, request_id)]), [(request_id, body, nonce)])
        if self.conn is not None:
            self.conn.close()
        expected = {body for body, _ in self.published}
        assert expected <= set(self.target.accepted), "a good publish was never acknowledged"
        deadline = 10.0
        while not expected <= set(self.target.delivered):  # the bystander gets every accepted publish
            try:
                raw = self.target.bystander.recv(timeout=deadline)
            except TimeoutError:
                raise AssertionError(f"the bystander missed {sorted(expected - set(self.target.delivered))}") from None
            for line in str(raw).split("\n"):
                message = orjson.loads(line)
                if message.get("op") == "message" and message["channel"] == CHANNEL:
                    self.target.delivered[message["data"]["text"]] += 1
                    assert self.target.accepted.get(message["data"]["text"]) == message["offset"]
        assert max(self.target.delivered.values(), default=1) == 1, "a publish was delivered twice"


@pytest.fixture
async def fuzz_server(backend: dict[str, Any]) -> Any:
    settings = make_settings(WS_PUBLISH_RATE=1000, WS_PUBLISH_BURST=1000, **backend)
    async with AppServer(settings) as server:
        yield server


async def stored_texts(server: AppServer, token: str) -> Counter[str]:
    """Every message of CHANNEL as the database has it, through the REST history (paged)."""
    texts: Counter[str] = Counter()
    since = 0
    async with server.client(headers={"Authorization": f"Bearer {token}"}) as client:
        while since is not None:
            response = await client.get(f"/api/channels/{CHANNEL}/messages", params={"since": since, "limit": 200})
            response.raise_for_status()
            page = response.json()
            texts.update(m["data"]["text"] for m in page["messages"])
            since = page["next_since"]
    return texts


async def test_fuzzed_frames_get_coded_answers_and_lose_nothing(fuzz_server: AppServer,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with fuzz_server.client() as client:
        for name in ("Fuzzy", "Bystander"):
            await register(client, name)
        fuzzy = (await login(client, "fuzzy"))["access_token"]
        watcher = (await login(client, "bystander"))["access_token"]
    from server.db.queries import users

    row = await users.by_username(fuzz_server.resources.db, "fuzzy")
    await users.update(fuzz_server.resources.db, row["id"], role="admin")  # may publish anything on bot:

    ws_url = fuzz_server.base_url.replace("http://", "ws://") + "/ws"

    def run() -> Target:
        bystander = open_socket(ws_url, watcher)
        bystander.send(orjson.dumps({"id": 1, "op": "subscribe", "channel": CHANNEL, "presence": False}).decode())
        assert orjson.loads(str(bystander.recv(timeout=5)).split("\n")[0])["ok"]
        WsFuzz.target = Target(ws_url, fuzzy, bystander)
        try:
            run_state_machine_as_test(WsFuzz, settings=settings(
                max_examples=MAX_EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=False,
                suppress_health_check=list(HealthCheck)))
        finally:
            bystander.close()
        return WsFuzz.target

    target = await asyncio.to_thread(run)

    assert target.accepted, "no publish was accepted: the property checked nothing"
    stored = await stored_texts(fuzz_server, watcher)
    assert {t: n for t, n in stored.items() if n != 1} == {}, "a message was stored twice"
    assert set(stored) == set(target.accepted), "stored and acknowledged publishes differ"
    assert target.closes[errors.FRAME_TOO_LARGE.code] >= 1, "no oversized frame was tried"
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or "ws_op_failed" in
                r.getMessage() or "ws_publish_failed" in r.getMessage() or r.exc_info]
    assert problems == [], f"the server logged unexpected failures: {problems[:3]}"

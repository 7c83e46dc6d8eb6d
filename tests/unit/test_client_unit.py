"""The bot client's pure parts: reconnect policy, backoff with full jitter, frame splitting, and the
ordering/de-duplication of recovered and live messages (driven through the frame dispatcher)."""

from __future__ import annotations

import random
import statistics

import orjson
import pytest

from realtime import errors
from realtime.client import (
    BACKOFF,
    NOW,
    STOP,
    Backoff,
    Gap,
    Join,
    Leave,
    Message,
    Notification,
    Push,
    VonixClient,
    close_action,
    split_frame,
    websocket_url,
)


@pytest.mark.parametrize("disconnect", errors.ALL_DISCONNECTS, ids=lambda d: str(d.code))
def test_close_action_follows_the_documented_reconnect_advice(disconnect: errors.Disconnect) -> None:
    action = close_action(disconnect.code)
    if not disconnect.reconnect:
        assert action == STOP
    elif disconnect.code == 1012:
        assert action == NOW
    else:
        assert action == BACKOFF


@pytest.mark.parametrize(("code", "action"), [(4000, STOP), (4099, STOP), (4100, BACKOFF), (4199, BACKOFF),
                                              (1012, NOW), (1006, BACKOFF), (1011, BACKOFF), (1001, BACKOFF),
                                              (None, BACKOFF)])
def test_close_action_by_range(code: int | None, action: str) -> None:
    assert close_action(code) == action


def test_backoff_ceiling_doubles_then_caps() -> None:
    backoff = Backoff(0.5, 30, rng=lambda: 1.0)  # the top of every jitter range: the ceiling itself
    delays = [backoff.next() for _ in range(10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_backoff_is_full_jitter() -> None:
    backoff = Backoff(1.0, 8.0, rng=random.Random(7).random)
    for _ in range(3):
        backoff.next()
    samples = []
    for _ in range(4000):
        backoff.attempt = 3  # ceiling 8
        samples.append(backoff.next())
    assert all(0 <= s <= 8.0 for s in samples)
    assert min(samples) < 0.1 and max(samples) > 7.9  # spread over the whole range, not +-10 %
    assert 3.7 < statistics.mean(samples) < 4.3  # uniform: mean is half the ceiling


def test_backoff_survives_huge_attempt_counts_and_rejects_nonsense() -> None:
    backoff = Backoff(0.5, 30, rng=lambda: 1.0)
    backoff.attempt = 10_000
    assert backoff.next() == 30
    assert 0 <= Backoff(0.5, 30).soon() <= 0.5  # 1012: small jitter only
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)


def test_split_frame_handles_one_or_many_objects() -> None:
    one = orjson.dumps({"id": 1, "ok": True})
    assert split_frame(one) == [{"id": 1, "ok": True}]
    many = b"\n".join([orjson.dumps({"op": "message", "offset": n, "data": {"text": "a\nb"}}) for n in range(3)])
    assert b"\\n" in many  # a newline inside a string is escaped, so splitting on raw \n is safe
    assert [f["offset"] for f in split_frame(many.decode())] == [0, 1, 2]
    assert split_frame(many + b"\n") == split_frame(many)
    with pytest.raises(orjson.JSONDecodeError):
        split_frame('{"id": 1}\n{broken')


@pytest.mark.parametrize(("given", "expected"), [
    ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/ws"),
    ("https://vonix.example/", "wss://vonix.example/ws"),
    ("ws://h:1", "ws://h:1/ws"),
    ("wss://h/custom/ws", "wss://h/custom/ws"),
])
def test_websocket_url(given: str, expected: str) -> None:
    assert websocket_url(given) == expected


def test_websocket_url_rejects_other_schemes() -> None:
    with pytest.raises(ValueError):
        websocket_url("ftp://h")


def message(offset: int, channel: str = "room:general", epoch: str = "db1") -> bytes:
    return orjson.dumps({"op": "message", "channel": channel, "offset": offset, "epoch": epoch,
                         "data": {"n": offset}, "from": {"id": 2, "username": "ann"}, "ts": 1.5})


def feed(client: VonixClient, *frames: bytes) -> None:
    for obj in split_frame(b"\n".join(frames)):
        client._dispatch(obj)


def drain(client: VonixClient) -> list[object]:
    return [client._events.get_nowait() for _ in range(client._events.qsize())]


async def test_recovered_messages_come_first_and_duplicates_are_dropped() -> None:
    client = VonixClient("http://127.0.0.1:1", "token-xxxxxxxx")
    client._on_subscribed("room:general", None, {"offset": 3, "epoch": "db1", "recovered": False, "missed": []})
    feed(client, message(4), message(5))
    since = {"offset": 5, "epoch": "db1"}  # reconnect: the server sends the reply, then live frames
    reply = {"id": 9, "ok": True, "channel": "room:general", "offset": 7, "epoch": "db1", "recovered": True,
             "missed": [orjson.loads(message(6)), orjson.loads(message(7))]}
    client._on_subscribed("room:general", since, reply)
    feed(client, message(7), message(8), message(8))
    events = drain(client)
    assert [(e.offset, e.recovered) for e in events if isinstance(e, Message)] == [
        (4, False), (5, False), (6, True), (7, True), (8, False)]


async def test_unrecoverable_gap_is_reported_and_a_new_epoch_is_accepted() -> None:
    client = VonixClient("http://127.0.0.1:1", "token-xxxxxxxx")
    client._on_subscribed("bot:weather", None, {"offset": 10, "epoch": "aaaa", "recovered": False, "missed": []})
    client._on_subscribed("bot:weather", {"offset": 10, "epoch": "aaaa"},
                          {"offset": 2, "epoch": "bbbb", "recovered": False, "missed": []})
    feed(client, message(1, "bot:weather", "bbbb"), message(3, "bot:weather", "bbbb"))
    events = drain(client)
    assert events[0] == Gap("bot:weather", 10, 2, "bbbb")
    assert [e.offset for e in events[1:]] == [3]  # 1 is older than the position the reply gave


async def test_pushes_become_typed_events() -> None:
    client = VonixClient("http://127.0.0.1:1", "token-xxxxxxxx")
    client._on_subscribed("user:5", None, {"offset": 0, "epoch": "e", "recovered": False, "missed": []})
    feed(client, orjson.dumps({"op": "presence_diff", "channel": "room:general",
                               "joins": [{"id": 1, "username": "a"}, {"id": 2, "username": "b"}],
                               "leaves": [{"id": 3, "username": "c"}]}),
         message(1, "user:5", "e"), orjson.dumps({"op": "future_thing", "x": 1}),
         message(9, "room:unknown"))  # not subscribed: dropped
    events = drain(client)
    assert events[:3] == [Join("room:general", {"id": 1, "username": "a"}),
                          Join("room:general", {"id": 2, "username": "b"}),
                          Leave("room:general", {"id": 3, "username": "c"})]
    assert isinstance(events[3], Notification) and events[3].channel == "user:5"
    assert events[4] == Push("future_thing", {"op": "future_thing", "x": 1})
    assert len(events) == 5


async def test_a_full_event_queue_stops_reading_without_losing_position() -> None:
    client = VonixClient("http://127.0.0.1:1", "token-xxxxxxxx", max_events=3)
    client._on_subscribed("room:general", None, {"offset": 0, "epoch": "db1", "recovered": False, "missed": []})
    feed(client, *(message(n) for n in range(1, 6)))
    assert client._overflow
    assert [e.offset for e in drain(client)] == [1, 2, 3]
    assert client._channels["room:general"].offset == 3  # the resubscribe recovers from 3: nothing lost

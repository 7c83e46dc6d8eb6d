"""Presence semantics on the in-process backend, with a clock the tests move instead of sleeping.

The Redis backend is held to the same semantics across two replicas in
tests/integration/test_presence_redis.py.
"""

from __future__ import annotations

import pytest

from realtime.presence import PresenceUser, create_presence
from realtime.presence.memory import MemoryPresence

TTL = 45.0
ALICE = PresenceUser(1, "alice")
BOB = PresenceUser(2, "bob")
CAROL = PresenceUser(3, "carol")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def presence(clock: FakeClock) -> MemoryPresence:
    return MemoryPresence(ttl=TTL, clock=clock)


def test_without_redis_the_memory_backend_is_chosen() -> None:
    assert isinstance(create_presence(None), MemoryPresence)


def test_presence_user_wire_shape() -> None:
    assert ALICE.as_dict() == {"id": 1, "username": "alice"}
    assert PresenceUser.from_dict(ALICE.as_dict()) == ALICE


async def test_two_tabs_are_one_presence_that_joins_and_leaves_once(presence: MemoryPresence) -> None:
    assert await presence.join("room:a", "tab1", ALICE) is True
    assert await presence.join("room:a", "tab2", ALICE) is False
    assert await presence.users("room:a") == [ALICE]
    assert await presence.leave("room:a", "tab1", ALICE.user_id) is False
    assert await presence.users("room:a") == [ALICE], "still present through the other tab"
    assert await presence.leave("room:a", "tab2", ALICE.user_id) is True
    assert await presence.users("room:a") == []


async def test_repeated_join_or_leave_of_one_connection_changes_nothing(presence: MemoryPresence) -> None:
    assert await presence.join("room:a", "tab1", ALICE) is True
    assert await presence.join("room:a", "tab1", ALICE) is False
    assert await presence.leave("room:a", "tab1", ALICE.user_id) is True, "one entry, one leave"
    assert await presence.leave("room:a", "tab1", ALICE.user_id) is False
    assert await presence.leave("room:nowhere", "tab9", ALICE.user_id) is False


async def test_users_are_unique_sorted_and_per_channel(presence: MemoryPresence) -> None:
    for conn, user in [("c1", CAROL), ("c2", ALICE), ("c3", BOB), ("c4", ALICE), ("c5", CAROL)]:
        await presence.join("room:a", conn, user)
    await presence.join("room:b", "c6", BOB)
    assert await presence.users("room:a") == [ALICE, BOB, CAROL]
    assert await presence.users("room:b") == [BOB]
    assert await presence.users("room:empty") == []


async def test_a_join_refreshes_the_username(presence: MemoryPresence) -> None:
    await presence.join("room:a", "tab1", ALICE)
    await presence.join("room:a", "tab2", PresenceUser(1, "alice2"))
    assert await presence.users("room:a") == [PresenceUser(1, "alice2")]


async def test_expired_entries_are_swept_and_their_leave_reported_once(
    presence: MemoryPresence, clock: FakeClock
) -> None:
    await presence.join("room:a", "dead1", ALICE)
    await presence.join("room:a", "dead2", ALICE)
    await presence.join("room:b", "dead3", ALICE)
    await presence.join("room:a", "live", BOB)
    clock.advance(TTL - 1)
    assert await presence.sweep() == [], "nothing expires before ttl"
    assert await presence.heartbeat([("room:a", "live")]) == []
    clock.advance(2)
    assert sorted(await presence.sweep(), key=repr) == [("room:a", ALICE), ("room:b", ALICE)]
    assert await presence.sweep() == [], "a leave is reported once"
    assert await presence.users("room:a") == [BOB]
    assert await presence.users("room:b") == []


async def test_heartbeats_keep_entries_alive_past_many_ttls(presence: MemoryPresence, clock: FakeClock) -> None:
    await presence.join("room:a", "tab1", ALICE)
    for _ in range(5):
        clock.advance(TTL * 0.6)
        assert await presence.heartbeat([("room:a", "tab1")]) == []
        assert await presence.sweep() == []
    assert await presence.users("room:a") == [ALICE]


async def test_expiry_of_one_tab_keeps_the_user_present(presence: MemoryPresence, clock: FakeClock) -> None:
    await presence.join("room:a", "dead", ALICE)
    clock.advance(TTL / 2)
    await presence.join("room:a", "live", ALICE)
    clock.advance(TTL / 2 + 1)
    assert await presence.sweep() == [], "the user still has a live tab"
    assert await presence.users("room:a") == [ALICE]
    assert await presence.leave("room:a", "live", ALICE.user_id) is True


async def test_a_late_heartbeat_reports_swept_entries_so_the_node_can_rejoin(
    presence: MemoryPresence, clock: FakeClock
) -> None:
    await presence.join("room:a", "tab1", ALICE)
    clock.advance(TTL + 1)
    assert await presence.sweep() == [("room:a", ALICE)]
    assert await presence.heartbeat([("room:a", "tab1"), ("room:b", "tab1")]) == [
        ("room:a", "tab1"), ("room:b", "tab1")]
    assert await presence.join("room:a", "tab1", ALICE) is True, "the rejoin publishes a join again"


async def test_an_expired_entry_heartbeated_before_any_sweep_stays(presence: MemoryPresence, clock: FakeClock) -> None:
    await presence.join("room:a", "tab1", ALICE)
    clock.advance(TTL + 1)
    assert await presence.heartbeat([("room:a", "tab1")]) == []
    assert await presence.sweep() == [], "no leave was reported, so the presence simply continues"


async def test_connection_cap(presence: MemoryPresence, clock: FakeClock) -> None:
    assert [await presence.register_connection(1, f"c{i}", 3) for i in range(3)] == [True] * 3
    assert await presence.register_connection(1, "c3", 3) is False, "at the cap"
    assert await presence.register_connection(1, "c0", 3) is True, "re-registering one connection is not a new one"
    assert await presence.register_connection(2, "d0", 3) is True, "the cap is per user"
    await presence.unregister_connection(1, "c0")
    assert await presence.register_connection(1, "c3", 3) is True, "a closed connection frees its slot"
    assert await presence.register_connection(1, "c4", 3) is False


async def test_connection_cap_follows_expiry_and_heartbeats(presence: MemoryPresence, clock: FakeClock) -> None:
    await presence.register_connection(1, "kept", 2)
    await presence.register_connection(1, "dead", 2)
    clock.advance(TTL - 1)
    await presence.heartbeat_connections([(1, "kept")])
    clock.advance(2)
    assert await presence.register_connection(1, "new", 2) is True, "the dead replica's record expired"
    assert await presence.register_connection(1, "more", 2) is False, "the heartbeated one still counts"

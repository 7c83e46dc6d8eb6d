"""The presence interface: which users have a live connection in a channel, on any replica.

A user is present in a channel from the join of their first connection until their last
connection leaves or expires, however many tabs and replicas they use. `join`, `leave` and `sweep`
report exactly those two edges (0 -> 1 and 1 -> 0 connections), atomically, so the node publishes
one join push and one leave push per presence and never a second leave from a second replica.

Each entry carries an expiry that the owning replica pushes forward with `heartbeat`. A replica
killed with SIGKILL never says goodbye: its entries stop being refreshed, and the next `sweep` on
any surviving replica after `ttl` seconds removes them and reports the leaves. With `ttl=45` and
sweeps every ~10 s its users are gone within 60 s. A user stays listed by `users()` until their
last entry is removed (by `leave` or `sweep`), so the snapshot and the pushes always agree.

The same expiry scheme caps connections per user across replicas (`register_connection`).

Expiries come from the replica's clock (`clock`, default `time.time`), as Centrifuge does: clocks
must agree to well within `ttl - heartbeat interval` (NTP gives milliseconds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Clock = Callable[[], float]
DEFAULT_TTL = 45.0


@dataclass(frozen=True, slots=True)
class PresenceUser:
    user_id: int
    username: str

    def as_dict(self) -> dict[str, Any]:
        """The `user` object of presence pushes and replies."""
        return {"id": self.user_id, "username": self.username}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PresenceUser:
        return cls(int(data["id"]), str(data["username"]))


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """One connection joining or leaving a channel (`apply` takes many, in order)."""

    join: bool  # False: a leave
    channel: str
    conn_id: str
    user: PresenceUser


class PresenceUnavailable(Exception):
    """The presence store (Redis) could not be reached in time; the call changed nothing known.

    Raised instead of a backend's own errors so the node need not import redis. Every Redis call
    has a short socket timeout, so this arrives quickly; the node decides how to degrade (admit
    the connection, skip the push, retry on the next heartbeat).
    """


class Presence(Protocol):
    """What the node needs from a presence backend."""

    async def join(self, channel: str, conn_id: str, user: PresenceUser) -> bool:
        """Add this connection; True when it is the user's first connection in the channel."""
        ...

    async def leave(self, channel: str, conn_id: str, user_id: int) -> bool:
        """Remove this connection; True when it was the user's last one in the channel."""
        ...

    async def apply(self, changes: Sequence[PresenceChange]) -> list[bool]:
        """`join`/`leave` many in order, in one round trip; True for each edge (first join, last
        leave). What a reconnect storm needs: one call per batch, not per connection."""
        ...

    async def users(self, channel: str) -> list[PresenceUser]:
        """Unique present users, ordered by user id."""
        ...

    async def heartbeat(self, entries: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Push forward the expiry of this replica's (channel, conn_id) entries, in one round trip.

        Returns the entries that no longer exist: a sweep removed them (and reported the leave)
        while this replica was too slow to heartbeat. The node calls `join` again for each, which
        restores the presence and tells it to publish a new join push.
        """
        ...

    async def sweep(self) -> list[tuple[str, PresenceUser]]:
        """Remove expired entries; return (channel, user) for each user whose last entry expired.

        Safe on every replica at once: each leave is reported by exactly one caller.
        """
        ...

    async def register_connection(self, user_id: int, conn_id: str, limit: int) -> bool:
        """Record the connection unless the user already has `limit` live ones (then False)."""
        ...

    async def register_connections(self, entries: Sequence[tuple[int, str]], limit: int) -> list[bool]:
        """`register_connection` for many (user_id, conn_id) in one round trip, in order."""
        ...

    async def unregister_connection(self, user_id: int, conn_id: str) -> None: ...

    async def unregister_connections(self, entries: Sequence[tuple[int, str]]) -> None:
        """`unregister_connection` for many (user_id, conn_id) in one round trip."""
        ...

    async def connection_count(self, user_id: int) -> int:
        """Live (unexpired) connections of a user across all replicas."""
        ...

    async def connected_users(self, user_ids: Sequence[int]) -> set[int]:
        """Which of these users hold a live connection on any replica (one round trip)."""
        ...

    async def heartbeat_connections(self, entries: Sequence[tuple[int, str]]) -> None:
        """Push forward the expiry of this replica's (user_id, conn_id) connection records."""
        ...


def create_presence(
    redis: Any | None,
    *,
    ttl: float = DEFAULT_TTL,
    prefix: str = "vonix:",
    clock: Clock | None = None,
) -> Presence:
    """Pick the backend: Redis when a command client (`RedisClients.commands`) is given."""
    if redis is None:
        from realtime.presence.memory import MemoryPresence

        return MemoryPresence(ttl=ttl, clock=clock)
    from realtime.presence.redis import RedisPresence

    return RedisPresence(redis, ttl=ttl, prefix=prefix, clock=clock)

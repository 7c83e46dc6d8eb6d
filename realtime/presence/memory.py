"""In-process presence for embedded mode (one replica): plain dicts, the Redis semantics.

Expiry still applies, driven by the clock, so the node runs the same heartbeat and sweep loops
in both modes and the unit tests can move time instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from realtime.presence.base import DEFAULT_TTL, Clock, PresenceChange, PresenceUser


@dataclass
class _Channel:
    conns: dict[str, tuple[int, float]] = field(default_factory=dict)  # conn_id -> (user_id, expiry)
    counts: dict[int, int] = field(default_factory=dict)  # user_id -> entries not yet removed
    users: dict[int, PresenceUser] = field(default_factory=dict)


class MemoryPresence:
    def __init__(self, *, ttl: float = DEFAULT_TTL, clock: Clock | None = None) -> None:
        self.ttl = ttl
        self.clock: Clock = clock or time.time
        self._channels: dict[str, _Channel] = {}
        self._connections: dict[int, dict[str, float]] = {}  # user_id -> conn_id -> expiry

    async def join(self, channel: str, conn_id: str, user: PresenceUser) -> bool:
        state = self._channels.setdefault(channel, _Channel())
        expiry = self.clock() + self.ttl
        state.users[user.user_id] = user  # a rename shows on the next join
        if conn_id in state.conns:
            state.conns[conn_id] = (state.conns[conn_id][0], expiry)
            return False
        state.conns[conn_id] = (user.user_id, expiry)
        state.counts[user.user_id] = state.counts.get(user.user_id, 0) + 1
        return state.counts[user.user_id] == 1

    async def leave(self, channel: str, conn_id: str, user_id: int) -> bool:
        state = self._channels.get(channel)
        if state is None or conn_id not in state.conns:
            return False
        last = self._remove(state, conn_id) is not None
        if not state.conns:
            del self._channels[channel]
        return last

    async def apply(self, changes: Sequence[PresenceChange]) -> list[bool]:
        return [await (self.join(c.channel, c.conn_id, c.user) if c.join
                       else self.leave(c.channel, c.conn_id, c.user.user_id)) for c in changes]

    async def users(self, channel: str) -> list[PresenceUser]:
        state = self._channels.get(channel)
        if state is None:
            return []
        return sorted(state.users.values(), key=lambda user: user.user_id)

    async def heartbeat(self, entries: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        expiry = self.clock() + self.ttl
        lost: list[tuple[str, str]] = []
        for channel, conn_id in entries:
            state = self._channels.get(channel)
            if state is None or conn_id not in state.conns:
                lost.append((channel, conn_id))
                continue
            state.conns[conn_id] = (state.conns[conn_id][0], expiry)
        return lost

    async def sweep(self) -> list[tuple[str, PresenceUser]]:
        now = self.clock()
        left: list[tuple[str, PresenceUser]] = []
        for channel, state in list(self._channels.items()):
            for conn_id, (_, expiry) in list(state.conns.items()):
                if expiry <= now:
                    gone = self._remove(state, conn_id)
                    if gone is not None:
                        left.append((channel, gone))
            if not state.conns:
                del self._channels[channel]
        return left

    async def register_connection(self, user_id: int, conn_id: str, limit: int) -> bool:
        now = self.clock()
        conns = {c: e for c, e in self._connections.get(user_id, {}).items() if e > now}
        if conn_id not in conns and len(conns) >= limit:
            self._store_connections(user_id, conns)
            return False
        conns[conn_id] = now + self.ttl
        self._store_connections(user_id, conns)
        return True

    async def register_connections(self, entries: Sequence[tuple[int, str]], limit: int) -> list[bool]:
        return [await self.register_connection(user_id, conn_id, limit) for user_id, conn_id in entries]

    async def unregister_connection(self, user_id: int, conn_id: str) -> None:
        conns = self._connections.get(user_id, {})
        conns.pop(conn_id, None)
        self._store_connections(user_id, conns)

    async def unregister_connections(self, entries: Sequence[tuple[int, str]]) -> None:
        for user_id, conn_id in entries:
            await self.unregister_connection(user_id, conn_id)

    async def connection_count(self, user_id: int) -> int:
        now = self.clock()
        return sum(1 for expiry in self._connections.get(user_id, {}).values() if expiry > now)

    async def connected_users(self, user_ids: Sequence[int]) -> set[int]:
        now = self.clock()
        return {uid for uid in user_ids if any(exp > now for exp in self._connections.get(uid, {}).values())}

    async def heartbeat_connections(self, entries: Sequence[tuple[int, str]]) -> None:
        # Re-adds a record that expired: the connection is real, so it must count.
        expiry = self.clock() + self.ttl
        for user_id, conn_id in entries:
            self._connections.setdefault(user_id, {})[conn_id] = expiry

    @staticmethod
    def _remove(state: _Channel, conn_id: str) -> PresenceUser | None:
        """Drop one entry; return the user when it was their last in the channel."""
        user_id, _ = state.conns.pop(conn_id)
        state.counts[user_id] -= 1
        if state.counts[user_id] > 0:
            return None
        del state.counts[user_id]
        return state.users.pop(user_id)

    def _store_connections(self, user_id: int, conns: dict[str, float]) -> None:
        if conns:
            self._connections[user_id] = conns
        else:
            self._connections.pop(user_id, None)

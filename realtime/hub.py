"""Local connections and subscriptions of this replica, and the fan-out loop.

The hub knows nothing about the broker or the transport: the node tells it who subscribed to what
and hands it ready frames. `deliver` is the hot path: one dict lookup per message and one O(1)
`push` per subscriber, no JSON, no allocation per subscriber beyond the queue append.
"""

from __future__ import annotations

from collections.abc import Iterable

from realtime.connection import Connection


class Hub:
    def __init__(self) -> None:
        self.connections: dict[str, Connection] = {}
        self.channels: dict[str, dict[Connection, None]] = {}
        self.by_session: dict[str, set[Connection]] = {}
        self.by_user: dict[int, set[Connection]] = {}
        self._recovering: dict[str, set[Connection]] = {}

    # --- connections ---------------------------------------------------------------------------
    def add(self, conn: Connection) -> None:
        self.connections[conn.conn_id] = conn

    def identify(self, conn: Connection) -> None:
        """Index an authenticated connection by user and session (revocation, caps)."""
        user = conn.user
        assert user is not None
        self.by_user.setdefault(user.user_id, set()).add(conn)
        if user.session_id:
            self.by_session.setdefault(user.session_id, set()).add(conn)

    def remove(self, conn: Connection) -> list[str]:
        """Forget a connection; returns the channels whose last local subscriber it was."""
        self.connections.pop(conn.conn_id, None)
        emptied = [channel for channel in list(conn.subscriptions) if self.unsubscribe(conn, channel)]
        user = conn.user
        if user is not None:
            self._discard(self.by_user, user.user_id, conn)
            if user.session_id:
                self._discard(self.by_session, user.session_id, conn)
        return emptied

    @staticmethod
    def _discard(index: dict, key: object, conn: Connection) -> None:  # type: ignore[type-arg]
        members = index.get(key)
        if members is not None:
            members.discard(conn)
            if not members:
                del index[key]

    # --- subscriptions -------------------------------------------------------------------------
    def subscribe(self, conn: Connection, channel: str, *, recovering: bool = False) -> bool:
        """Add a subscriber; True when it is the first on this replica (subscribe the broker)."""
        subscribers = self.channels.get(channel)
        first = subscribers is None
        if subscribers is None:
            subscribers = self.channels[channel] = {}
        subscribers[conn] = None
        conn.subscriptions.add(channel)
        if recovering:
            conn.recovering[channel] = []
            self._recovering.setdefault(channel, set()).add(conn)
        return first

    def unsubscribe(self, conn: Connection, channel: str) -> bool:
        """Remove a subscriber; True when it was the last on this replica (unsubscribe the broker)."""
        conn.subscriptions.discard(channel)
        if conn.presence_muted is not None:
            conn.presence_muted.discard(channel)
        self.end_recovery(conn, channel)
        subscribers = self.channels.get(channel)
        if subscribers is None:
            return False
        subscribers.pop(conn, None)
        if not subscribers:
            del self.channels[channel]
            return True
        return False

    def end_recovery(self, conn: Connection, channel: str) -> list[tuple[int, bytes]]:
        """Stop buffering live frames for this subscriber; returns what was buffered meanwhile."""
        buffered = conn.recovering.pop(channel, None)
        waiting = self._recovering.get(channel)
        if waiting is not None:
            waiting.discard(conn)
            if not waiting:
                del self._recovering[channel]
        return buffered or []

    # --- fan-out -------------------------------------------------------------------------------
    def deliver(self, channel: str, offset: int | None, frame: bytes) -> int:
        """Hand one encoded frame to every local subscriber; returns how many got it."""
        subscribers = self.channels.get(channel)
        if not subscribers:
            return 0
        if channel in self._recovering and offset is not None:
            for conn in subscribers:
                conn.push_recoverable(channel, offset, frame)
        else:
            for conn in subscribers:
                conn.push(frame)
        return len(subscribers)

    def deliver_presence(self, channel: str, frame: bytes) -> int:
        """A presence diff: only to subscribers who asked for presence (a few per second at most,
        so the per-subscriber check is fine here, unlike on the message path)."""
        subscribers = self.channels.get(channel)
        if not subscribers:
            return 0
        delivered = 0
        for conn in subscribers:
            if conn.hears_presence(channel):
                conn.push(frame)
                delivered += 1
        return delivered

    def sessions(self, session_ids: Iterable[str]) -> list[Connection]:
        found: list[Connection] = []
        for session_id in session_ids:
            found.extend(self.by_session.get(session_id, ()))
        return found

    def subscription_count(self) -> int:
        return sum(len(s) for s in self.channels.values())

"""The asyncpg connection class of the pool: no reset query when a connection goes back.

asyncpg's pool sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;` every
time a connection is released: one more round trip after every statement outside a transaction
(a subscribe's membership check, a channel's last offset). Vonix never changes session state on
a pooled connection (no advisory locks, cursors, LISTEN or SET), so there is nothing to undo;
an open transaction is still rolled back by asyncpg whatever this returns.
"""

from __future__ import annotations

import asyncpg


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    def get_reset_query(self) -> str:
        return ""

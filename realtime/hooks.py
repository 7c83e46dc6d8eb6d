"""What the hosting application provides to the node: identity, permissions and persistence.

The realtime package never imports the HTTP app; the server implements this interface with its
database and RBAC (`server/realtime_hooks.py`) and hands it to the node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from realtime.connection import ConnUser
from realtime.history.base import FrameParts


@dataclass(frozen=True, slots=True)
class Persisted:
    offset: int
    epoch: str
    parts: FrameParts
    duplicate: bool = False  # a repeated nonce: the first message's offset, nothing published


@dataclass(slots=True)
class PendingMessage:
    """A message waiting to be stored: who sent what where, and when it was published."""

    user: ConnUser | None
    channel: str
    data: Any
    nonce: str | None
    ts: float


class ChannelHooks(Protocol):
    async def authenticate(self, token: str) -> ConnUser:
        """The user a token belongs to; raise ReplyError(invalid_token) otherwise."""
        ...

    async def session_alive(self, session_id: str) -> bool: ...

    async def authorize(self, user: ConnUser, channel: str, action: str) -> None:
        """Raise ReplyError(forbidden) unless `user` may `action` (subscribe|publish|history|presence|
        amend: edit, delete or react to a message)."""
        ...

    def public(self, channel: str) -> bool:
        """Channels anyone may follow without signing in (the game servers' status): a connection
        that has not authenticated may subscribe to these and nothing else."""
        ...

    def persisted(self, channel: str) -> bool:
        """Chat channels are stored in the database; others are ephemeral (hot window only)."""
        ...

    async def validate(self, channel: str, data: Any, user: ConnUser | None) -> Any:
        """The data of a message for a persisted channel as it will be stored (normalised), or
        ReplyError(invalid_data) with field details: one schema for the websocket and REST.
        `user` publishes it (None: the server), since bots may say more than members (bridges)."""
        ...

    async def mark_read(self, user: ConnUser, channel: str, offset: int) -> dict[str, Any]:
        """Move the user's read marker of a chat channel forward (and what it covers, e.g. the
        notifications of those messages); answers the fields of the `read` reply."""
        ...

    async def persist_many(self, batch: Sequence[PendingMessage]) -> list[Persisted | Exception]:
        """Store a batch in one transaction (after commit the node publishes it), one outcome per
        message in order; a message that cannot be stored (its channel is gone) gets its error
        while the others are stored. Raise when the transaction fails as a whole."""
        ...

    async def position(self, channel: str) -> tuple[int, str]:
        """Last offset and epoch of a persisted channel."""
        ...

    async def history(self, channel: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Stored messages after an offset, as push frames, oldest first."""
        ...

    async def amendment(self, user: ConnUser, channel: str, op: str, offset: int, data: Any,
                        emoji: str | None) -> Any:
        """The event that edits, deletes or reacts to the stored message at `offset` (op is one of
        protocol.AMEND_OPS), validated and permitted; stored and published like a message, with
        its own offset. ReplyError(message_not_found | forbidden | invalid_data) otherwise."""
        ...

    def user_online(self, user: ConnUser) -> None:
        """The user's first live connection on this replica; must return at once (friends are told)."""
        ...

    def user_offline(self, user: ConnUser) -> None:
        """The user's last connection on this replica is gone (its presence record already is)."""
        ...

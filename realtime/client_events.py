"""What the bot client yields to its iterator: messages and the connection's own events.

Plain frozen dataclasses, kept apart from `VonixClient` so a bot can match on them without the
websocket machinery; `realtime.client` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from realtime.client_errors import VonixError


@dataclass(frozen=True, slots=True)
class Message:
    channel: str
    offset: int
    epoch: str
    data: Any
    sender: dict[str, Any] | None  # {"id", "username"}; None when the server published it
    ts: float
    recovered: bool = False  # delivered from the `missed` list of a resubscribe

    @property
    def event(self) -> str | None:
        """`edit`, `delete` or `reaction` when this is a change to the message at `data["target"]`
        (docs/protocol.md, "Message events"); None for a plain message."""
        kind = self.data.get("type") if isinstance(self.data, dict) else None
        return kind if kind in ("edit", "delete", "reaction") and "target" in self.data else None


@dataclass(frozen=True, slots=True)
class Notification(Message):
    """A message on the personal `user:<id>` channel (published by the server)."""


@dataclass(frozen=True, slots=True)
class UserEvent:
    """Something a user did on a channel; bots match on the subclasses."""

    channel: str
    user: dict[str, Any]  # {"id", "username"}


@dataclass(frozen=True, slots=True)
class Join(UserEvent):
    pass


@dataclass(frozen=True, slots=True)
class Leave(UserEvent):
    pass


@dataclass(frozen=True, slots=True)
class Typing(UserEvent):
    pass


@dataclass(frozen=True, slots=True)
class Push:
    """A push this client version does not know; the raw object."""

    op: str
    frame: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Connected:
    user: dict[str, Any]
    conn_id: str
    reconnected: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    code: int
    reason: str
    retry_in: float | None  # None: the client stops


@dataclass(frozen=True, slots=True)
class Gap:
    """Resubscribing could not recover (`recovered: false`): messages after `since` may be missing."""

    channel: str
    since: int
    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class SubscriptionLost:
    """A remembered channel was refused on resubscribe (e.g. `forbidden`); it is forgotten."""

    channel: str
    error: VonixError


Event = Message | Join | Leave | Typing | Push | Connected | Disconnected | Gap | SubscriptionLost

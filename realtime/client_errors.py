"""How the bot client fails, and what a close code asks of it (stop, reconnect now, or back off).

The close policy is pure so it can be unit-tested against the documented close codes;
`realtime.client` re-exports all of it.
"""

from __future__ import annotations

from typing import Any


class VonixError(Exception):
    """A reply error (`code`, `message`, `temporary`, `retry_after`), or a client-side failure."""

    def __init__(self, code: str, message: str, *, temporary: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.temporary = temporary
        self.retry_after = retry_after

    @classmethod
    def from_reply(cls, error: dict[str, Any]) -> VonixError:
        return cls(str(error.get("code")), str(error.get("message")), temporary=bool(error.get("temporary")),
                   retry_after=error.get("retry_after"))


class ConnectionLost(VonixError):
    def __init__(self) -> None:
        super().__init__("connection_lost", "the connection closed before the reply", temporary=True)


class Closed(VonixError):
    """The client stopped: a close code that forbids reconnecting, or `reconnect=False`."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__("closed", f"closed with {close_code} {reason}".strip())
        self.close_code = close_code
        self.reason = reason


STOP, BACKOFF, NOW = "stop", "backoff", "now"


def close_action(code: int | None) -> str:
    """What a close code asks of the client: 4000-4099 stop, 1012 reconnect now, else back off."""
    if code is not None and 4000 <= code <= 4099:
        return STOP
    if code == 1012:
        return NOW
    return BACKOFF

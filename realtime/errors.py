"""Close codes and reply error codes of wire protocol v1 (documented in docs/protocol.md).

Close codes by range, as Discord's gateway and Pusher document theirs:
- 4000-4099: do not reconnect (the same request would fail again).
- 4100-4199: reconnect with backoff (and jitter).
- 1012: the server is restarting: reconnect now, another replica will take you.
Reply errors carry `temporary`: true means the same request may succeed if retried later.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Disconnect:
    code: int
    reason: str
    reconnect: bool


# --- do not reconnect -------------------------------------------------------------------------
BAD_AUTH = Disconnect(4001, "authentication failed", False)
AUTH_TIMEOUT = Disconnect(4002, "no auth frame in time", False)
SESSION_REVOKED = Disconnect(4003, "session revoked", False)
FORBIDDEN_ORIGIN = Disconnect(4004, "origin not allowed", False)
PROTOCOL_VIOLATION = Disconnect(4005, "protocol violation", False)
TOO_MANY_CONNECTIONS = Disconnect(4006, "too many connections for this user", False)
BANNED = Disconnect(4007, "banned", False)
FRAME_TOO_LARGE = Disconnect(4009, "frame too large", False)
# --- reconnect with backoff -----------------------------------------------------------------
TOKEN_EXPIRED = Disconnect(4100, "token expired", True)
SLOW_CONSUMER = Disconnect(4101, "slow consumer", True)
ABUSE = Disconnect(4102, "rate limit exceeded repeatedly", True)
IDLE_TIMEOUT = Disconnect(4103, "no pong in time", True)
SERVER_ERROR = Disconnect(4104, "internal error", True)
# --- reconnect now, elsewhere ---------------------------------------------------------------
SERVICE_RESTART = Disconnect(1012, "server restarting", True)

ALL_DISCONNECTS = (BAD_AUTH, AUTH_TIMEOUT, SESSION_REVOKED, FORBIDDEN_ORIGIN, PROTOCOL_VIOLATION,
                   TOO_MANY_CONNECTIONS, BANNED, FRAME_TOO_LARGE, TOKEN_EXPIRED, SLOW_CONSUMER, ABUSE, IDLE_TIMEOUT,
                   SERVER_ERROR, SERVICE_RESTART)


@dataclass(frozen=True, slots=True)
class ReplyError(Exception):
    code: str
    message: str
    temporary: bool = False
    retry_after: float | None = None
    # Field errors, as the HTTP error shape has them: ({"field", "code", "message"}, ...).
    details: tuple[dict[str, str], ...] = ()


# Reply error codes (the `code` of `{"ok":false,"error":{...}}`).
INVALID_JSON = "invalid_json"
INVALID_FRAME = "invalid_frame"
UNKNOWN_OP = "unknown_op"
INVALID_CHANNEL = "invalid_channel"
FORBIDDEN = "forbidden"
NOT_SUBSCRIBED = "not_subscribed"
ALREADY_SUBSCRIBED = "already_subscribed"
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
RATE_LIMITED = "rate_limited"
NOT_AUTHENTICATED = "not_authenticated"
ALREADY_AUTHENTICATED = "already_authenticated"
INVALID_TOKEN = "invalid_token"
MESSAGE_TOO_LARGE = "message_too_large"
INVALID_DATA = "invalid_data"
MESSAGE_NOT_FOUND = "message_not_found"  # edit, delete, react: no such (live, visible) message
UNAVAILABLE = "unavailable"
INTERNAL = "internal_error"

"""Limits as data: one `Rule` per limit, parsed from compact settings strings.

Grammar (used by `RATE_LIMIT_AUTH`/`_WRITE`/`_READ`, `RATE_LIMIT_ROUTES` and `RATE_LIMIT_ACTIONS`):
- `N/S`    sliding window: at most N requests in any S seconds (sliding-window counter).
- `N/S+B`  token bucket: bursts of up to B, refilled at N per S seconds.
- `off`    no limit.
Routes: `METHOD /template=LIMIT` or `/template=LIMIT` (every method), comma separated; the template
is the route's path as declared (`/api/channels/{channel}/messages`). Actions: `name=LIMIT`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*(?:\+\s*(\d+))?\s*$")
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class InvalidLimit(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Rule:
    """`limit` per `period` seconds; with `burst` it is a token bucket, else a sliding window.

    `fail_open`: when the shared store (Redis) is unreachable, count on this replica instead
    (True) or refuse (False).
    """

    name: str
    limit: int
    period: float
    burst: int | None = None
    fail_open: bool = True

    @property
    def algorithm(self) -> str:
        return "token_bucket" if self.burst is not None else "sliding_window"

    @property
    def rate(self) -> float:
        """Tokens per second (token bucket) or average requests per second allowed."""
        return self.limit / self.period

    @property
    def capacity(self) -> int:
        """What `RateLimit-Limit` announces: the window's quota or the bucket's size."""
        return self.burst if self.burst is not None else self.limit

    def describe(self) -> str:
        text = f"{self.limit}/{self.period:g}"
        return f"{text}+{self.burst}" if self.burst is not None else text


def parse_limit(name: str, text: str, *, fail_open: bool = True) -> Rule | None:
    """`N/S`, `N/S+B` or `off` -> a Rule (None for off)."""
    if text.strip().lower() in ("off", "none", "0"):
        return None
    match = _LIMIT.match(text)
    if match is None:
        raise InvalidLimit(f"{name}: {text!r} is not N/SECONDS, N/SECONDS+BURST or off")
    limit, period, burst = int(match[1]), float(match[2]), match[3]
    if limit < 1 or period <= 0:
        raise InvalidLimit(f"{name}: the count and the period must be positive")
    if burst is not None and int(burst) < 1:
        raise InvalidLimit(f"{name}: the burst must be positive")
    return Rule(name, limit, period, int(burst) if burst is not None else None, fail_open)


def _pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in text.split(","):
        if not item.strip():
            continue
        left, sep, right = item.rpartition("=")
        if not sep or not left.strip():
            raise InvalidLimit(f"{item.strip()!r} is not NAME=LIMIT")
        pairs.append((left.strip(), right.strip()))
    return pairs


def parse_actions(text: str) -> dict[str, Rule | None]:
    """`post=30/60,friend_request=20/3600` -> {action: rule}."""
    actions: dict[str, Rule | None] = {}
    for name, limit in _pairs(text):
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name):
            raise InvalidLimit(f"action {name!r}: use lower-case letters, digits and _")
        actions[name] = parse_limit(f"action:{name}", limit)
    return actions


def parse_routes(text: str) -> dict[tuple[str | None, str], Rule | None]:
    """`POST /api/auth/register=5/3600,/api/rooms=off` -> {(method or None, template): rule}."""
    routes: dict[tuple[str | None, str], Rule | None] = {}
    for target, limit in _pairs(text):
        prefix, _, path = target.rpartition(" ")
        method = prefix.strip().upper() or None
        if method is not None and method not in _METHODS:
            raise InvalidLimit(f"route {target!r}: unknown method {method}")
        if not path.startswith("/"):
            raise InvalidLimit(f"route {target!r}: the path template must start with /")
        label = f"route:{method + ' ' if method else ''}{path}"
        routes[(method, path)] = parse_limit(label, limit)
    return routes

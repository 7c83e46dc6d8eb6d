"""Rate limits: sliding window and token bucket, in Redis (scaled) or in process (embedded)."""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection

from server.ratelimit.limiter import RateLimiter, create_limiter
from server.ratelimit.memory import Decision
from server.ratelimit.rules import Rule


async def limit_action(connection: HTTPConnection, principal: Any, action: str) -> Decision | None:
    """Count one social action (`post`, `friend_request`, `reaction`, ...) of the caller.

    Raises `RateLimited` (429 with `Retry-After`) over the action's limit in `RATE_LIMIT_ACTIONS`;
    actions without a limit pass.
    """
    limiter: RateLimiter | None = getattr(connection.app.state.vonix, "limiter", None)
    if limiter is None:
        return None
    return await limiter.limit_action(principal.user_id, action)


__all__ = ["Decision", "RateLimiter", "Rule", "create_limiter", "limit_action"]

"""The rate limiter the app holds: the configured rules, a counting backend and the analytics.

Rules come from settings: one per class of `/api/` request (`auth`, `write`, `read`: see
`classes.py`), per-route overrides and per-action limits (`limit_action`). The authentication
lockout is database-backed (server/auth/lockout.py) and the websocket publish limit is the
per-connection token bucket in realtime/connection.py; both are listed in `report()` so the admin
sees every limit in one place.
"""

from __future__ import annotations

from typing import Any

from server.errors import RateLimited
from server.ratelimit.analytics import summarize
from server.ratelimit.backend import LimiterBackend, MemoryCounts
from server.ratelimit.classes import CLASSES
from server.ratelimit.memory import Decision
from server.ratelimit.rules import Rule, parse_actions, parse_limit, parse_routes


class RateLimiter:
    def __init__(
        self,
        backend: LimiterBackend | None = None,
        *,
        classes: dict[str, Rule | None] | None = None,
        routes: dict[tuple[str | None, str], Rule | None] | None = None,
        actions: dict[str, Rule | None] | None = None,
        enabled: bool = True,
        metrics: Any = None,
        fixed: list[dict[str, Any]] | None = None,
    ) -> None:
        self.backend: LimiterBackend = backend or MemoryCounts()
        self.classes = classes or {}
        self.routes = routes or {}
        self.actions = actions or {}
        self.enabled = enabled
        self.fixed = fixed or []  # limits enforced elsewhere, for the report
        self._decisions = metrics.counter(
            "vonix_ratelimit_decisions_total", "Rate limit decisions by rule and outcome (allowed, limited).",
            ("rule", "outcome")) if metrics is not None else None
        self._degraded = metrics.counter(
            "vonix_ratelimit_degraded_total", "Decisions taken without Redis (local count or fail-closed), by rule.",
            ("rule",)) if metrics is not None else None

    async def hit(self, rule: Rule, key: str, cost: int = 1) -> Decision:
        decision = await self.backend.hit(rule, key, cost)
        if self._decisions is not None:
            self._decisions.labels(rule.name, "allowed" if decision.allowed else "limited").inc()
            if decision.degraded:
                self._degraded.labels(rule.name).inc()  # type: ignore[union-attr]
        return decision

    async def limit_action(self, user_id: int, action: str) -> Decision | None:
        """Count a social action of a user (`post`, `friend_request`, ...); raise 429 when over.

        Actions without a configured rule are not limited.
        """
        rule = self.actions.get(action)
        if rule is None or not self.enabled:
            return None
        decision = await self.hit(rule, f"user:{user_id}")
        if not decision.allowed:
            raise RateLimited(f"Too many {action.replace('_', ' ')} actions; try again later.",
                              headers=decision.headers())
        return decision

    def rules(self) -> list[dict[str, Any]]:
        configured = [*self.classes.values(), *self.routes.values(), *self.actions.values()]
        return [
            {"rule": r.name, "algorithm": r.algorithm, "limit": r.describe(),
             "on_redis_outage": "count locally" if r.fail_open else "refuse"}
            for r in configured if r is not None
        ] + self.fixed

    async def report(self, top: int = 20) -> dict[str, Any]:
        counts, limited = await self.backend.snapshot()
        return {"enabled": self.enabled, "store": self.backend.status(), "rules": self.rules(),
                **summarize(counts, limited, top)}


def create_limiter(settings: Any, redis: Any = None, metrics: Any = None) -> RateLimiter:
    """Counted in Redis when it is configured (shared by replicas), else in this process."""
    backend: LimiterBackend = MemoryCounts()
    if redis is not None:
        from server.ratelimit.redis import RedisCounts

        backend = RedisCounts(redis)
    lockout = "database (no Redis); fails closed with the database"
    fixed = [
        {"rule": "auth:account", "algorithm": "lockout", "on_redis_outage": lockout,
         "limit": f"{settings.lockout_threshold}/{settings.lockout_window}"},
        {"rule": "auth:ip", "algorithm": "lockout", "on_redis_outage": lockout,
         "limit": f"{settings.ip_failure_limit}/{settings.lockout_window}"},
        {"rule": "ws:publish", "algorithm": "token_bucket (per connection)", "on_redis_outage": "unaffected",
         "limit": f"{settings.ws_publish_rate:g}/1+{settings.ws_publish_burst:g}"},
    ]
    return RateLimiter(
        backend,
        classes={name: parse_limit(name, getattr(settings, f"rate_limit_{name}")) for name in CLASSES},
        routes=parse_routes(settings.rate_limit_routes),
        actions=parse_actions(settings.rate_limit_actions),
        enabled=settings.rate_limit_enabled,
        metrics=metrics,
        fixed=fixed,
    )

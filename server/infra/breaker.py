"""Circuit breakers for every external call (OAuth providers, web push services, SMTP, webhooks).

A breaker per named dependency (e.g. `push:fcm.googleapis.com`): closed -> open after
`failure_threshold` consecutive failures; while open every call fails fast with `CircuitOpen`
(no network wait); after `reset_timeout` one trial call is let through (half-open); its success
closes the circuit, its failure opens it again. In scaled mode the state lives in Redis so every
replica stops hammering a dead service together; in embedded mode it is in process. Each
transition is logged once and counted in `vonix_circuit_transitions_total{breaker,state}`.

Breaker names are bounded by construction: the caller names the service (a host of a configured
provider), never a user-controlled string.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from server.observability.logging import get_logger

log = get_logger("vonix.breaker")
T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitOpen(Exception):
    """The dependency is considered down; the call was not attempted."""

    def __init__(self, name: str, retry_in: float) -> None:
        super().__init__(f"circuit {name} is open; retry in {retry_in:.1f}s")
        self.name = name
        self.retry_in = retry_in


@dataclass
class BreakerState:
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trial_started: float = 0.0


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 5
    reset_timeout: float = 30.0
    call_timeout: float = 10.0


class _MemoryStore:
    def __init__(self) -> None:
        self.states: dict[str, BreakerState] = {}

    async def load(self, name: str) -> BreakerState:
        return self.states.setdefault(name, BreakerState())

    async def save(self, name: str, state: BreakerState) -> None:
        self.states[name] = state


class _RedisStore:
    """One small hash per breaker; a Redis outage falls back to the local copy (never raises)."""

    def __init__(self, client: Any, prefix: str = "vonix:breaker:") -> None:
        self.client = client
        self.prefix = prefix
        self.local = _MemoryStore()

    async def load(self, name: str) -> BreakerState:
        try:
            raw = await self.client.hgetall(self.prefix + name)
        except Exception:
            return await self.local.load(name)
        if not raw:
            return await self.local.load(name)
        decoded = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                   for k, v in raw.items()}
        state = BreakerState(decoded.get("state", CLOSED), int(decoded.get("failures", 0)),
                             float(decoded.get("opened_at", 0)), float(decoded.get("trial_started", 0)))
        await self.local.save(name, state)
        return state

    async def save(self, name: str, state: BreakerState) -> None:
        await self.local.save(name, state)
        try:
            await self.client.hset(self.prefix + name, mapping={
                "state": state.state, "failures": state.failures, "opened_at": state.opened_at,
                "trial_started": state.trial_started})
            await self.client.expire(self.prefix + name, 86400)
        except Exception:
            return


@dataclass
class Breakers:
    """The app's breakers: one policy, many named circuits, shared state store."""

    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    metrics: Any = None
    redis: Any = None
    clock: Callable[[], float] = time.time
    _store: Any = None
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._store = _RedisStore(self.redis) if self.redis is not None else _MemoryStore()
        if self.metrics is not None:
            self._transitions = self.metrics.counter(
                "vonix_circuit_transitions_total", "Circuit breaker state changes.", ("breaker", "state"))
            self._rejected = self.metrics.counter(
                "vonix_circuit_rejected_total", "Calls failed fast because the circuit was open.", ("breaker",))
            self._state_gauge = self.metrics.gauge(
                "vonix_circuit_open", "1 while a circuit is open or half-open.", ("breaker",))
        self.listeners: list[Callable[[str, str], None]] = []

    async def state(self, name: str) -> BreakerState:
        return await self._store.load(name)

    async def call(self, name: str, operation: Callable[[], Awaitable[T]],
                   is_failure: Callable[[BaseException], bool] = lambda exc: True) -> T:
        """Run `operation` through the breaker `name`; raises CircuitOpen without calling it when open."""
        state = await self._store.load(name)
        now = self.clock()
        if state.state == OPEN:
            waited = now - state.opened_at
            if waited < self.policy.reset_timeout:
                self._reject(name)
                raise CircuitOpen(name, self.policy.reset_timeout - waited)
            await self._transition(name, state, HALF_OPEN, trial_started=now)
        elif state.state == HALF_OPEN and now - state.trial_started < self.policy.call_timeout:
            self._reject(name)  # one trial at a time
            raise CircuitOpen(name, self.policy.call_timeout - (now - state.trial_started))
        elif state.state == HALF_OPEN:
            await self._transition(name, state, HALF_OPEN, trial_started=now)
        try:
            result = await asyncio.wait_for(operation(), timeout=self.policy.call_timeout)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) or not is_failure(exc):
                raise
            await self._failure(name)
            raise
        await self._success(name)
        return result

    async def _success(self, name: str) -> None:
        state = await self._store.load(name)
        if state.state != CLOSED or state.failures:
            await self._transition(name, state, CLOSED, failures=0)

    async def _failure(self, name: str) -> None:
        state = await self._store.load(name)
        failures = state.failures + 1
        if state.state == HALF_OPEN or failures >= self.policy.failure_threshold:
            await self._transition(name, state, OPEN, failures=failures, opened_at=self.clock())
        else:
            state.failures = failures
            await self._store.save(name, state)

    async def _transition(self, name: str, state: BreakerState, new: str, **changes: Any) -> None:
        previous = state.state
        updated = BreakerState(new, changes.get("failures", state.failures),
                               changes.get("opened_at", state.opened_at),
                               changes.get("trial_started", state.trial_started))
        await self._store.save(name, updated)
        if previous == new:
            return
        level = log.warning if new == OPEN else log.info
        level("circuit_" + new, breaker=name, previous=previous, failures=updated.failures)
        if self.metrics is not None:
            self._transitions.labels(name, new).inc()
            self._state_gauge.labels(name).set(0 if new == CLOSED else 1)
        for listener in self.listeners:
            listener(name, new)

    def _reject(self, name: str) -> None:
        if self.metrics is not None:
            self._rejected.labels(name).inc()

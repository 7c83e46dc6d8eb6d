"""Alerting: rules evaluated in the server, delivered to Discord/Slack-compatible webhooks.

Rules (defaults from settings): more than ALERT_ERROR_COUNT unexpected errors within the window,
a 5xx rate above ALERT_ERROR_RATE, p99 latency above ALERT_P99_SECONDS, Redis or the database
down, a circuit breaker opened. A rule fires once, then stays quiet for ALERT_COOLDOWN (across
replicas: the cooldown is a Redis key when Redis is configured); when the condition clears a
"resolved" notice follows. Delivery happens in the background, through a circuit breaker with
retries, so a dead webhook receiver never slows a request.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

from server.infra.breaker import Breakers, CircuitOpen
from server.observability.logging import get_logger

log = get_logger("vonix.alerts")


@dataclass
class RequestWindow:
    """Recent (timestamp, status, seconds) of HTTP requests on this replica, for rate and p99 rules."""

    seconds: float
    samples: deque[tuple[float, int, float]] = field(default_factory=lambda: deque(maxlen=50_000))

    def add(self, status: int, duration: float) -> None:
        self.samples.append((time.time(), status, duration))

    def recent(self) -> list[tuple[float, int, float]]:
        horizon = time.time() - self.seconds
        while self.samples and self.samples[0][0] < horizon:
            self.samples.popleft()
        return list(self.samples)


@dataclass
class Alert:
    rule: str
    summary: str
    severity: str = "critical"


class Alerter:
    def __init__(self, settings: Any, breakers: Breakers, metrics: Any, redis: Any = None) -> None:
        self.settings = settings
        self.breakers = breakers
        self.redis = redis
        self.window = RequestWindow(settings.alert_error_window)
        self.firing: dict[str, Alert] = {}
        self.last_sent: dict[str, float] = {}
        self.opened_circuits: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self.sent = metrics.counter("vonix_alerts_sent_total", "Alert notifications delivered, by rule and kind.",
                                    ("rule", "kind"))
        self.failed = metrics.counter("vonix_alert_delivery_failures_total", "Alert deliveries that failed.")
        self.active = metrics.gauge("vonix_alerts_firing", "Alert rules currently firing.", ("rule",))
        breakers.listeners.append(self._on_circuit)

    def _on_circuit(self, name: str, state: str) -> None:
        if name.startswith("alerts:"):
            return  # our own delivery breaker must not alert about itself
        if state == "open":
            self.opened_circuits.add(name)
        elif state == "closed":
            self.opened_circuits.discard(name)

    def evaluate(self, errors_in_window: int, health: dict[str, Any]) -> list[Alert]:
        s = self.settings
        alerts: list[Alert] = []
        if errors_in_window > s.alert_error_count:
            alerts.append(Alert("error_burst", f"{errors_in_window} unexpected errors in the last "
                                f"{int(s.alert_error_window)} s (threshold {s.alert_error_count})"))
        samples = self.window.recent()
        if len(samples) >= 20:
            failures = sum(1 for _, status, _ in samples if status >= 500)
            if failures / len(samples) > s.alert_error_rate:
                alerts.append(Alert("error_rate", f"{failures}/{len(samples)} requests failed "
                                    f"({failures / len(samples):.1%} > {s.alert_error_rate:.0%})"))
            durations = sorted(d for _, _, d in samples)
            p99 = durations[min(len(durations) - 1, int(len(durations) * 0.99))]
            if p99 > s.alert_p99_seconds:
                alerts.append(Alert("latency_p99", f"p99 latency {p99 * 1000:.0f} ms > "
                                    f"{s.alert_p99_seconds * 1000:.0f} ms", severity="warning"))
        for component in ("database", "redis"):
            status = health.get(component)
            if status is not None and getattr(status, "status", None) == "down":
                alerts.append(Alert(f"{component}_down", f"{component} is down: {getattr(status, 'detail', '')}"))
        for name in sorted(self.opened_circuits):
            alerts.append(Alert("circuit_open", f"circuit {name} opened", severity="warning"))
        return alerts

    async def tick(self, errors_in_window: int, health: dict[str, Any]) -> None:
        """Evaluate, fire new alerts (respecting the cooldown), resolve cleared ones."""
        now = time.time()
        current = {alert.rule: alert for alert in self.evaluate(errors_in_window, health)}
        for rule, alert in current.items():
            self.active.labels(rule).set(1)
            if rule in self.firing and now - self.last_sent.get(rule, 0) < self.settings.alert_cooldown:
                continue
            if await self._claim(rule):
                self.last_sent[rule] = now
                self._deliver(alert, "firing")
            self.firing[rule] = alert
        for rule in list(self.firing):
            if rule not in current:
                alert = self.firing.pop(rule)
                self.active.labels(rule).set(0)
                self._deliver(alert, "resolved")

    async def _claim(self, rule: str) -> bool:
        """Across replicas, one notification per rule per cooldown."""
        if self.redis is None:
            return True
        try:
            return bool(await self.redis.set(f"vonix:alert:{rule}", "1", nx=True,
                                              ex=max(1, int(self.settings.alert_cooldown))))
        except Exception:
            return True  # Redis down: rather a duplicate alert than a silent outage

    def _deliver(self, alert: Alert, kind: str) -> None:
        log.warning("alert_" + kind, rule=alert.rule, summary=alert.summary)
        for url in self.settings.alert_webhook_urls:
            task = asyncio.get_running_loop().create_task(self._send(url, alert, kind))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def payload(self, alert: Alert, kind: str) -> dict[str, Any]:
        prefix = "RESOLVED" if kind == "resolved" else alert.severity.upper()
        text = f"[Vonix {prefix}] {alert.rule}: {alert.summary} (instance {self.settings.instance_id})"
        # `content` is Discord's field, `text` Slack's: one body works for both.
        return {"content": text, "text": text, "username": "Vonix alerts",
                "alert": {"rule": alert.rule, "status": kind, "severity": alert.severity,
                          "summary": alert.summary, "instance": self.settings.instance_id}}

    async def _send(self, url: str, alert: Alert, kind: str) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=5.0)
        client = self._client
        body = self.payload(alert, kind)
        host = httpx.URL(url).host or "webhook"
        for attempt in range(3):
            try:
                async def post() -> None:
                    response = await client.post(url, json=body)
                    response.raise_for_status()

                await self.breakers.call(f"alerts:{host}", post)
                self.sent.labels(alert.rule, kind).inc()
                return
            except CircuitOpen:
                break
            except Exception as exc:
                log.warning("alert_delivery_failed", rule=alert.rule, attempt=attempt + 1,
                            error=exc.__class__.__name__)
                await asyncio.sleep(0.5 * 2**attempt)
        self.failed.inc()

    async def run(self, errors: Any, health: Any) -> None:
        while True:
            await asyncio.sleep(self.settings.alert_interval)
            try:
                await self.tick(errors.errors_within(self.settings.alert_error_window), health.last)
            except Exception:
                log.exception("alert_evaluation_failed")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()

"""Send web push messages: VAPID-signed, aes128gcm-encrypted (pywebpush), TTL, urgency and topic set.

Every push service host sits behind its own circuit breaker (`push:<host>`, shared with the rest of
the app's breakers): a host that keeps timing out or answering 5xx/429 is skipped until it has had
time to recover, so one dead push service never slows the others. Temporary failures are retried
with exponential backoff and jitter (honouring `Retry-After`); 404/410 mean the browser dropped the
subscription, which is then deleted; other 4xx are the subscription's problem, not the host's.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from server.db.database import Database
from server.infra.breaker import CircuitOpen
from server.observability.logging import get_logger
from server.push import subscriptions, vapid
from server.push.subscriptions import Subscription

log = get_logger("vonix.push")
GONE = frozenset({404, 410})
MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True, slots=True)
class PushMessage:
    title: str
    body: str
    url: str
    tag: str  # collapses notifications of one conversation (the channel)
    kind: str
    notification_id: int | None = None
    urgency: str = "normal"  # very-low | low | normal | high (RFC 8030 §5.3)

    def payload(self) -> str:
        return orjson.dumps({"title": self.title, "body": self.body, "url": self.url, "tag": self.tag,
                             "kind": self.kind, "id": self.notification_id}).decode()

    def topic(self) -> str:
        """RFC 8030 Topic: a pending message with the same topic is replaced (32 base64url chars)."""
        return vapid.b64url(hashlib.sha256(self.tag.encode()).digest()[:24])


class PushFailed(Exception):
    """A retryable failure (timeout, connection error, 429, 5xx): counts against the host's breaker."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PushRejected(Exception):
    """The push service refused this subscription (4xx): not the host's fault, not retried."""

    def __init__(self, status: int) -> None:
        super().__init__(f"push service answered {status}")
        self.status = status


Sleep = Callable[[float], Awaitable[None]]


class PushSender:
    def __init__(self, settings: Any, db: Database, breakers: Any, metrics: Any = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.settings = settings
        self.db = db
        self.breakers = breakers
        self.sleep = sleep
        self._vapid: Any = None
        self.public_key: str | None = None
        if settings.vapid_private_key is not None:
            from py_vapid import Vapid02

            key = vapid.load_private(settings.vapid_private_key.get_secret_value())
            self._vapid = Vapid02.from_raw(vapid.raw_private(key).encode())
            self.public_key = vapid.public_key_of(key)
        self._sent = metrics.counter("vonix_push_sent_total", "Web push deliveries by outcome.",
                                     ("outcome",)) if metrics is not None else None

    @property
    def enabled(self) -> bool:
        return self._vapid is not None and self.settings.push_when != "never"

    async def send_to_user(self, user_id: int, message: PushMessage) -> list[str]:
        """Send to every subscription of the user, concurrently; returns each outcome."""
        if not self.enabled:
            return []
        subs = await subscriptions.for_user(self.db, user_id)
        return list(await asyncio.gather(*(self.send(sub, message) for sub in subs)))

    async def send(self, sub: Subscription, message: PushMessage) -> str:
        host = urlsplit(sub.endpoint).netloc or "invalid"
        attempts = 1 + self.settings.push_retries
        outcome = "failed"
        for attempt in range(attempts):
            try:
                await self.breakers.call(f"push:{host}", lambda: self._post(sub, message),
                                         is_failure=lambda exc: isinstance(exc, PushFailed | TimeoutError))
                await subscriptions.record(self.db, sub.id, ok=True)
                outcome = "sent"
                break
            except CircuitOpen:
                outcome = "circuit_open"
                break
            except PushRejected as exc:
                if exc.status in GONE:
                    await subscriptions.delete(self.db, sub.id)
                    log.info("push_subscription_gone", subscription_id=sub.id, user_id=sub.user_id, status=exc.status)
                    outcome = "gone"
                else:
                    await subscriptions.record(self.db, sub.id, ok=False)
                    log.warning("push_rejected", subscription_id=sub.id, host=host, status=exc.status)
                    outcome = "rejected"
                break
            except (PushFailed, TimeoutError) as exc:
                reason = exc.reason if isinstance(exc, PushFailed) else "timeout"
                if attempt + 1 >= attempts:
                    await subscriptions.record(self.db, sub.id, ok=False)
                    log.warning("push_failed", subscription_id=sub.id, host=host, reason=reason, attempts=attempts)
                    break
                delay = self.settings.push_retry_backoff * 2**attempt * random.uniform(0.5, 1.0)
                if isinstance(exc, PushFailed) and exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, MAX_RETRY_AFTER))
                await self.sleep(delay)
        if self._sent is not None:
            self._sent.labels(outcome).inc()
        return outcome

    async def _post(self, sub: Subscription, message: PushMessage) -> None:
        import aiohttp
        from pywebpush import WebPushException, webpush_async

        try:
            await webpush_async(
                sub.info(), data=message.payload(), vapid_private_key=self._vapid,
                vapid_claims={"sub": self.settings.vapid_subject},  # fresh dict: pywebpush mutates it
                content_encoding="aes128gcm", timeout=self.settings.push_timeout, ttl=self.settings.push_ttl,
                headers={"Urgency": message.urgency, "Topic": message.topic()})
        except WebPushException as exc:
            status = exc.response.status if exc.response is not None else 0
            if status == 429 or status >= 500 or status == 0:
                raise PushFailed(f"status {status}", _retry_after(exc.response)) from None
            raise PushRejected(status) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PushFailed(exc.__class__.__name__) from None


def _retry_after(response: Any) -> float | None:
    try:
        return float(response.headers.get("Retry-After"))
    except (AttributeError, TypeError, ValueError):
        return None

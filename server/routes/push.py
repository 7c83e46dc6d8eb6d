"""`/api/push/*`: the browser's web push subscriptions and the VAPID public key it needs."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from server.auth.principal import principal_of, requires
from server.errors import BadRequest, NotFound, ServiceUnavailable
from server.jsonio import JSONResponse, read_json
from server.openapi import api
from server.openapi.responses import Closed
from server.push import subscriptions
from server.push.sender import PushMessage
from server.push.vapid import b64url_decode
from server.resources import resources_of


class Keys(BaseModel):
    p256dh: str = Field(min_length=20, max_length=255)
    auth: str = Field(min_length=8, max_length=255)

    @field_validator("p256dh")
    @classmethod
    def _point(cls, value: str) -> str:
        if len(_decode(value)) != 65:
            raise ValueError("must be the base64url uncompressed P-256 point (65 bytes)")
        return value

    @field_validator("auth")
    @classmethod
    def _secret(cls, value: str) -> str:
        if len(_decode(value)) != 16:
            raise ValueError("must be the base64url 16-byte auth secret")
        return value


def _decode(value: str) -> bytes:
    try:
        return b64url_decode(value)
    except ValueError:
        return b""


class SubscribeBody(BaseModel):
    endpoint: str = Field(min_length=10, max_length=1024)
    keys: Keys


class UnsubscribeBody(BaseModel):
    endpoint: str = Field(min_length=10, max_length=1024)


def _check_endpoint(request: Request, endpoint: str) -> None:
    parts = urlsplit(endpoint)
    allowed = ("https",) if resources_of(request).settings.is_production else ("https", "http")
    if parts.scheme not in allowed or not parts.netloc:
        raise BadRequest("The push endpoint must be an https URL.", code="invalid_endpoint")


class PushKey(Closed):
    """The VAPID public key for `pushManager.subscribe` (null when push is off)."""

    enabled: bool
    public_key: str | None


class PushSubscription(Closed):
    id: int
    endpoint: str


class PushSubscriptions(Closed):
    subscriptions: list[PushSubscription]


PushOutcome = Literal["sent", "gone", "rejected", "failed", "circuit_open"]  # `PushSender.send`


class PushTestResult(Closed):
    """One outcome per subscription of the caller (`gone` ones were removed); `sent` counts the sent."""

    sent: int
    outcomes: list[PushOutcome]


@requires()
async def key(request: Request) -> Response:
    push = resources_of(request).push
    enabled = push is not None and push.enabled
    return JSONResponse({"enabled": enabled, "public_key": push.public_key if push is not None and enabled else None})


@requires()
async def list_subscriptions(request: Request) -> Response:
    rows = await subscriptions.for_user(resources_of(request).db, principal_of(request).user_id)
    return JSONResponse({"subscriptions": [{"id": r.id, "endpoint": r.endpoint} for r in rows]})


@requires()
async def subscribe(request: Request) -> Response:
    body = await read_json(request, SubscribeBody)
    _check_endpoint(request, body.endpoint)
    resources = resources_of(request)
    sub, created = await subscriptions.upsert(resources.db, principal_of(request).user_id, body.endpoint,
                                              body.keys.p256dh, body.keys.auth,
                                              (request.headers.get("user-agent") or "")[:512] or None)
    return JSONResponse({"id": sub.id, "endpoint": sub.endpoint}, status_code=201 if created else 200)


@requires()
async def unsubscribe(request: Request) -> Response:
    body = await read_json(request, UnsubscribeBody)
    if not await subscriptions.delete_for_user(resources_of(request).db, principal_of(request).user_id,
                                               body.endpoint):
        raise NotFound("No such subscription.", code="subscription_not_found")
    return Response(status_code=204)


@requires()
async def test_push(request: Request) -> Response:
    """Send a test notification to the caller's own browsers (the settings screen's button)."""
    resources = resources_of(request)
    push = resources.push
    if push is None or not push.enabled:
        raise ServiceUnavailable("Web push is not configured on this server.", code="push_disabled")
    outcomes = await push.send_to_user(principal_of(request).user_id, PushMessage(
        title="Vonix notifications are on", body="This is how Vonix will tell you about mentions and messages.",
        url="/settings", tag="vonix:test", kind="test"))
    return JSONResponse({"sent": outcomes.count("sent"), "outcomes": outcomes})


routes = [
    api("/api/push/key", key, ["GET"], ok={200: PushKey}),
    api("/api/push/subscriptions", list_subscriptions, ["GET"], ok={200: PushSubscriptions}),
    api("/api/push/subscriptions", subscribe, ["POST"], ok={200: PushSubscription, 201: PushSubscription}),
    api("/api/push/subscriptions", unsubscribe, ["DELETE"]),
    api("/api/push/test", test_push, ["POST"], ok={200: PushTestResult}),
]

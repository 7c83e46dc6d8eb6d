"""A local stand-in for a browser push service (RFC 8030), checking what a real one checks.

Each `subscribe()` makes a browser-side subscription: a P-256 key pair and an auth secret, with an
endpoint on this server. A delivery must carry a valid VAPID `Authorization: vapid t=<JWT>, k=<key>`
(ES256 signature verified with `k`, `aud` = this origin, `exp` within 24 h, a `sub`), and its body
must decrypt (aes128gcm, RFC 8291) with the subscription's private key and auth secret. Answers are
201 unless a status was queued for the subscription (`answer(sub, 410)`, `answer(sub, 503, 503)`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
import orjson
import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.inloop import QuietServer as _QuietServer
from tests.support.services import free_port


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Delivery:
    subscription: str
    headers: dict[str, str]
    claims: dict[str, Any]
    vapid_key: str
    payload: dict[str, Any]


@dataclass
class BrowserSubscription:
    name: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    answers: list[int] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        point = self.private_key.public_key().public_bytes(serialization.Encoding.X962,
                                                           serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "keys": {"p256dh": b64url(point), "auth": b64url(self.auth_secret)}}


class VapidError(Exception):
    pass


def verify_vapid(header: str, origin: str) -> tuple[dict[str, Any], str]:
    """Check `vapid t=<jwt>, k=<key>`: signature by k, audience, expiry, subject. Returns (claims, k)."""
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "vapid":
        raise VapidError(f"scheme {scheme!r}")
    params = dict(part.strip().split("=", 1) for part in rest.split(","))
    token, key = params["t"], params["k"]
    head_b64, claims_b64, signature_b64 = token.split(".")
    head = orjson.loads(unb64url(head_b64))
    if head.get("alg") != "ES256":
        raise VapidError(f"alg {head.get('alg')}")
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
    raw = unb64url(signature_b64)
    signature = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        public.verify(signature, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VapidError("bad signature") from None
    claims = orjson.loads(unb64url(claims_b64))
    if claims.get("aud") != origin:
        raise VapidError(f"aud {claims.get('aud')!r} != {origin!r}")
    if not time.time() < claims.get("exp", 0) <= time.time() + 24 * 3600:
        raise VapidError("exp out of range")
    if not str(claims.get("sub", "")).startswith(("mailto:", "https://")):
        raise VapidError("sub missing")
    return claims, key




class PushService:
    def __init__(self) -> None:
        self.port = free_port()
        self.subscriptions: dict[str, BrowserSubscription] = {}
        self.deliveries: list[Delivery] = []
        self.requests: list[tuple[str, int]] = []  # (subscription, status answered), every request
        self.refusals: list[str] = []
        self.arrived = asyncio.Event()
        app = Starlette(routes=[Route("/push/{name}", self._receive, methods=["POST"])])
        self._server = _QuietServer(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                   access_log=False, lifespan="off"))
        self._task: asyncio.Task[Any] | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def subscribe(self) -> BrowserSubscription:
        name = b64url(os.urandom(9))
        sub = BrowserSubscription(name, f"{self.origin}/push/{name}", ec.generate_private_key(ec.SECP256R1()),
                                  os.urandom(16))
        self.subscriptions[name] = sub
        return sub

    def answer(self, sub: BrowserSubscription, *statuses: int) -> None:
        sub.answers.extend(statuses)

    async def _receive(self, request: Request) -> Response:
        name = request.path_params["name"]
        sub = self.subscriptions.get(name)
        if sub is None:
            return Response(status_code=404)
        if sub.answers:
            status = sub.answers.pop(0)
            self.requests.append((name, status))
            if status >= 300:
                return Response(status_code=status)
        try:
            claims, key = verify_vapid(request.headers.get("authorization", ""), self.origin)
            if request.headers.get("content-encoding") != "aes128gcm":
                raise VapidError("content-encoding is not aes128gcm")
            plain = http_ece.decrypt(await request.body(), private_key=sub.private_key, auth_secret=sub.auth_secret,
                                     version="aes128gcm")
        except Exception as exc:
            self.refusals.append(f"{exc.__class__.__name__}: {exc}")
            self.requests.append((name, 401))
            return Response(status_code=401)
        self.requests.append((name, 201))
        self.deliveries.append(Delivery(name, {k.lower(): v for k, v in request.headers.items()}, claims, key,
                                        orjson.loads(plain)))
        self.arrived.set()
        return Response(status_code=201, headers={"Location": f"{self.origin}/message/{len(self.deliveries)}"})

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.deliveries)} deliveries, wanted {count}; refusals {self.refusals}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.1)
        return self.deliveries

    async def __aenter__(self) -> PushService:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)

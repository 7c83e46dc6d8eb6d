"""A stand-in for the parts of Discord the bridge uses, on 127.0.0.1 (a Starlette app on uvicorn in
the test's event loop). No real token: it accepts the ones it was built with and refuses others.

HTTP (under `/api/v10`):
- webhook execute `POST /webhooks/{id}/{token}[?wait=true]`, edit `PATCH …/messages/{mid}`,
  delete `DELETE …/messages/{mid}`;
- REST with `Authorization: Bot <token>`: `GET /channels/{cid}`, `POST /channels/{cid}/messages`,
  `PATCH`/`DELETE /channels/{cid}/messages/{mid}`.
Every call is recorded (`calls`: method, path, JSON body, monotonic time, status). Answers carry
`X-RateLimit-*` headers; `rate_limit_next(n, retry_after)` makes the next n calls answer 429 with
`retry_after` in the JSON body (`remaining`/`reset_after` set the headers of the others);
`fail_next(n, status)` makes them answer 5xx; `down = True` makes
every call answer 503 until reset.

Gateway (`/gateway`): HELLO with `heartbeat_interval`, IDENTIFY -> READY (with `session_id`,
`resume_gateway_url`, the bot `user`), RESUME -> the missed dispatches then RESUMED, heartbeat ->
ACK (unless `ack_heartbeats` is false). Test API: `dispatch(type, data)` sends a dispatch to the
connected client (and keeps it for a resume), `drop(code)` closes the connection, `message(...)`
builds a message object like Discord's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.support.inloop import QuietServer
from tests.support.services import free_port


@dataclass
class Call:
    method: str
    path: str
    json: Any
    at: float
    status: int = 200
    query: str = ""


@dataclass
class _Session:
    session_id: str
    events: list[dict[str, Any]] = field(default_factory=list)  # every dispatch sent, with its seq


class DiscordStandin:
    def __init__(self, *, webhook_id: str = "900000000000000001", webhook_token: str = "standin-webhook-token",
                 bot_token: str = "standin-bot-token", channel_id: str = "800000000000000001",
                 guild_id: str = "700000000000000001", bot_user_id: str = "600000000000000001",
                 heartbeat_interval_ms: int = 1000) -> None:
        self.webhook_id, self.webhook_token, self.bot_token = webhook_id, webhook_token, bot_token
        self.channel_id, self.guild_id, self.bot_user_id = channel_id, guild_id, bot_user_id
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.port = free_port()
        self.calls: list[Call] = []
        self.messages: dict[str, dict[str, Any]] = {}  # what the channel shows now, by id
        self.channel_names = {channel_id: "minecraft"}
        self.ack_heartbeats = True
        self.down = False
        self.remaining, self.reset_after = 4, 1.0  # the X-RateLimit-* headers of successful answers
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.close_codes: list[int] = []  # how the bridge closed each gateway connection
        self._ids = itertools.count(1_000_000_000_000_000_001)
        self._rate_limited: list[float] = []
        self._failing: list[int] = []
        self._sessions: dict[str, _Session] = {}
        self._socket: WebSocket | None = None
        self._session: _Session | None = None
        self._connected = asyncio.Event()
        self._call_seen = asyncio.Event()
        self._server: QuietServer | None = None
        self._task: asyncio.Task[Any] | None = None
        api = "/api/v10"
        self.app = Starlette(routes=[
            Route(api + "/webhooks/{wid}/{token}", self._execute, methods=["POST"]),
            Route(api + "/webhooks/{wid}/{token}/messages/{mid}", self._webhook_message, methods=["PATCH", "DELETE"]),
            Route(api + "/channels/{cid}", self._channel, methods=["GET"]),
            Route(api + "/channels/{cid}/messages", self._rest_send, methods=["POST"]),
            Route(api + "/channels/{cid}/messages/{mid}", self._rest_message, methods=["PATCH", "DELETE"]),
            WebSocketRoute("/gateway", self._gateway),
        ])

    # --- addresses -------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.base}/api/v10"

    @property
    def webhook_url(self) -> str:
        return f"{self.api_url}/webhooks/{self.webhook_id}/{self.webhook_token}"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.base}/gateway?v=10&encoding=json"

    def env(self) -> dict[str, str]:
        return {"DISCORD_API_URL": self.api_url, "DISCORD_GATEWAY_URL": self.gateway_url,
                "DISCORD_BOT_TOKEN": self.bot_token, "DISCORD_WEBHOOK_URL": self.webhook_url,
                "DISCORD_CHANNEL_ID": self.channel_id}

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> DiscordStandin:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_config=None, access_log=False,
                                lifespan="off", ws="websockets-sansio", ws_per_message_deflate=False)
        self._server = QuietServer(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(400):
            if self._server.started:
                return self
            await asyncio.sleep(0.025)
        raise TimeoutError("the Discord stand-in did not start")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            with contextlib.suppress(Exception):
                await self.drop(1001)
            self._server.should_exit = True
            await asyncio.wait_for(self._task, 10)

    # --- test controls ---------------------------------------------------------------------------
    def rate_limit_next(self, count: int, retry_after: float) -> None:
        self._rate_limited.extend([retry_after] * count)

    def fail_next(self, count: int, status: int = 503) -> None:
        self._failing.extend([status] * count)

    def webhook_calls(self, method: str | None = None) -> list[Call]:
        return [c for c in self.calls if "/webhooks/" in c.path and (method is None or c.method == method)
                and c.status < 300]

    async def wait_for_calls(self, predicate: Any, count: int = 1, timeout: float = 10.0) -> list[Call]:
        async def seen() -> list[Call]:
            while True:
                found = [c for c in self.calls if predicate(c)]
                if len(found) >= count:
                    return found
                self._call_seen.clear()
                await self._call_seen.wait()

        try:
            return await asyncio.wait_for(seen(), timeout)
        except TimeoutError:
            raise AssertionError(f"no such Discord call x{count}; calls: {self.calls}") from None

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def message(self, content: str, *, author: dict[str, Any] | None = None, mentions: list[dict[str, Any]] = (),  # type: ignore[assignment]
                message_id: str | None = None, **extra: Any) -> dict[str, Any]:
        author = author or {"id": "500000000000000001", "username": "steve_dc", "global_name": "Steve",
                            "avatar": "0123456789abcdef0123456789abcdef"}
        return {"id": message_id or str(next(self._ids)), "channel_id": self.channel_id, "guild_id": self.guild_id,
                "author": author, "content": content, "mentions": list(mentions), "attachments": [],
                "timestamp": "2026-12-04T16:00:00.000000+00:00", "type": 0, **extra}

    async def dispatch(self, kind: str, data: dict[str, Any]) -> None:
        """Send a dispatch to the connected bridge (kept for a resume if it is not connected)."""
        await asyncio.wait_for(self._connected.wait(), 10)
        session = self._session
        assert session is not None
        frame = {"op": 0, "t": kind, "s": len(session.events) + 1, "d": data}
        session.events.append(frame)
        socket = self._socket
        if socket is not None:
            with contextlib.suppress(Exception):
                await socket.send_text(orjson.dumps(frame).decode())

    def queue_for_resume(self, kind: str, data: dict[str, Any]) -> None:
        """Record a dispatch as sent while the bridge was away (a resume replays it)."""
        session = self._session
        assert session is not None
        session.events.append({"op": 0, "t": kind, "s": len(session.events) + 1, "d": data})

    async def drop(self, code: int = 4000) -> None:
        socket = self._socket
        self._connected.clear()
        self._socket = None
        if socket is not None:
            with contextlib.suppress(Exception):
                await socket.close(code)

    # --- HTTP ------------------------------------------------------------------------------------
    async def _record(self, request: Request) -> tuple[Call, Response | None]:
        body = await request.body()
        call = Call(request.method, request.url.path, orjson.loads(body) if body else None, time.monotonic(),
                    query=request.url.query)
        self.calls.append(call)
        self._call_seen.set()
        refusal: Response | None = None
        if self.down or self._failing:
            call.status = self._failing.pop(0) if self._failing else 503
            refusal = JSONResponse({"message": "upstream trouble", "code": 0}, status_code=call.status)
        elif self._rate_limited:
            retry_after = self._rate_limited.pop(0)
            call.status = 429
            refusal = JSONResponse({"message": "You are being rate limited.", "retry_after": retry_after,
                                    "global": False}, status_code=429,
                                   headers={"Retry-After": str(int(retry_after + 0.999)),
                                            "X-RateLimit-Scope": "user"})
        return call, refusal

    def _limits(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset-After": str(self.reset_after), "X-RateLimit-Bucket": "standin-webhook-bucket"}

    def _webhook_ok(self, request: Request) -> bool:
        return (request.path_params["wid"] == self.webhook_id
                and request.path_params["token"] == self.webhook_token)

    def _bot_ok(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bot {self.bot_token}"

    async def _admit(self, request: Request, *, webhook: bool) -> tuple[Call, Response | None]:
        """Record the call (a scripted refusal answers first), then check its credential: the
        webhook's id and token in the path, or the bot token in the header."""
        call, refusal = await self._record(request)
        if refusal is not None:
            return call, refusal
        if webhook and not self._webhook_ok(request):
            call.status = 401
            return call, JSONResponse({"message": "Invalid Webhook Token", "code": 50027}, status_code=401)
        if not webhook and not self._bot_ok(request):
            call.status = 401
            return call, JSONResponse({"message": "401: Unauthorized"}, status_code=401)
        return call, None

    def _new_message(self, body: dict[str, Any], *, webhook: bool) -> dict[str, Any]:
        message_id = str(next(self._ids))
        author = ({"id": self.webhook_id, "username": body.get("username") or "webhook", "bot": True}
                  if webhook else {"id": self.bot_user_id, "username": "vonix-bridge", "bot": True})
        message = {"id": message_id, "channel_id": self.channel_id, "content": body.get("content", ""),
                   "author": author, "mentions": [], "attachments": [], "type": 0}
        if webhook:
            message["webhook_id"] = self.webhook_id
        self.messages[message_id] = message
        return message

    async def _execute(self, request: Request) -> Response:
        call, refusal = await self._admit(request, webhook=True)
        if refusal is not None:
            return refusal
        message = self._new_message(call.json or {}, webhook=True)
        if request.query_params.get("wait") == "true":
            return JSONResponse(message, headers=self._limits())
        call.status = 204
        return Response(status_code=204, headers=self._limits())

    async def _webhook_message(self, request: Request) -> Response:
        call, refusal = await self._admit(request, webhook=True)
        if refusal is not None:
            return refusal
        return self._change(request, call)

    def _change(self, request: Request, call: Call) -> Response:
        message = self.messages.get(request.path_params["mid"])
        if message is None:
            call.status = 404
            return JSONResponse({"message": "Unknown Message", "code": 10008}, status_code=404)
        if request.method == "DELETE":
            del self.messages[message["id"]]
            call.status = 204
            return Response(status_code=204, headers=self._limits())
        message["content"] = (call.json or {}).get("content", message["content"])
        return JSONResponse(message, headers=self._limits())

    async def _channel(self, request: Request) -> Response:
        call, refusal = await self._admit(request, webhook=False)
        if refusal is not None:
            return refusal
        name = self.channel_names.get(request.path_params["cid"])
        if name is None:
            call.status = 404
            return JSONResponse({"message": "Unknown Channel"}, status_code=404)
        return JSONResponse({"id": request.path_params["cid"], "name": name, "type": 0})

    async def _rest_send(self, request: Request) -> Response:
        call, refusal = await self._admit(request, webhook=False)
        if refusal is not None:
            return refusal
        return JSONResponse(self._new_message(call.json or {}, webhook=False), headers=self._limits())

    async def _rest_message(self, request: Request) -> Response:
        call, refusal = await self._admit(request, webhook=False)
        if refusal is not None:
            return refusal
        return self._change(request, call)

    # --- gateway ---------------------------------------------------------------------------------
    async def _gateway(self, socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text(orjson.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms},
                                             "s": None, "t": None}).decode())
        try:
            while True:
                frame = orjson.loads(await socket.receive_text())
                op, data = frame.get("op"), frame.get("d")
                if op == 1:
                    self.heartbeats += 1
                    if self.ack_heartbeats:
                        await socket.send_text('{"op":11}')
                elif op == 2:
                    self.identifies.append(data)
                    if data.get("token") != self.bot_token:
                        await socket.close(4004)
                        return
                    session = _Session(uuid.uuid4().hex)
                    self._sessions[session.session_id] = session
                    await self._attach(socket, session)
                    ready = {"v": 10, "session_id": session.session_id, "user": {
                        "id": self.bot_user_id, "username": "vonix-bridge", "bot": True},
                        "resume_gateway_url": f"ws://{self.base}/gateway", "guilds": [{"id": self.guild_id}]}
                    session.events.append({"op": 0, "t": "READY", "s": len(session.events) + 1, "d": ready})
                    await socket.send_text(orjson.dumps(session.events[-1]).decode())
                elif op == 6:
                    self.resumes.append(data)
                    resumed = self._sessions.get(str(data.get("session_id")))
                    if data.get("token") != self.bot_token or resumed is None:
                        await socket.send_text('{"op":9,"d":false}')
                        continue
                    await self._attach(socket, resumed)
                    for event in resumed.events:
                        if event["s"] > int(data.get("seq") or 0) and event["t"] != "READY":
                            await socket.send_text(orjson.dumps(event).decode())
                    resumed.events.append({"op": 0, "t": "RESUMED", "s": len(resumed.events) + 1, "d": {}})
                    await socket.send_text(orjson.dumps(resumed.events[-1]).decode())
        except WebSocketDisconnect as closed:
            self.close_codes.append(closed.code)
        except RuntimeError:
            pass
        finally:
            if self._socket is socket:
                self._socket = None
                self._connected.clear()

    async def _attach(self, socket: WebSocket, session: _Session) -> None:
        self._socket, self._session = socket, session
        self._connected.set()

"""The Discord bridge: one Vonix room and one Discord channel, mirrored both ways (docs/bridges.md).

Its own process (`vonix discord-bridge`): a Vonix bot on the websocket (realtime/client.py)
following `room:<DISCORD_BRIDGE_ROOM>`, a Discord bot on the gateway (gateway.py) reading
`DISCORD_CHANNEL_ID`, and Discord's HTTP API through per-route queues and a circuit breaker
(discord_rest.py).

- **Vonix -> Discord.** Each room message not from the bridge's own bot is sent with the webhook
  (`POST {DISCORD_WEBHOOK_URL}?wait=true`) as its author: `username` the member's display name
  (a relayed message from another bridge: "[game] Steve"), `avatar_url` the member's avatar as an
  absolute URL (`PUBLIC_URL`, else `BRIDGE_SERVER_URL`), `allowed_mentions: {"parse": []}`, the text
  escaped by markup.py. The Discord message id is remembered per Vonix offset (the last 10,000),
  so `edit` and `delete` events become webhook message PATCH and DELETE. Without a webhook URL the
  bot posts with the REST API instead ("**Name**: text"). A member's name and avatar come from
  `GET /api/users/{username}` (cached 5 minutes).
- **Discord -> Vonix.** MESSAGE_CREATE / UPDATE / DELETE (and DELETE_BULK) of the channel become a
  publish with `via: {"source": "discord", "name", "avatar"}`, an `edit` and a `delete` of the
  bridge's own message. The publish nonce is `discord-<message id>`: Vonix stores a message whose
  event is delivered twice (a resumed gateway, a restarted bridge) once, and answers its offset,
  which also restores the id -> offset map after a restart. Messages from any webhook (ours
  included), from bots and from the bridge's own Discord user are ignored: no loops.
- **Health** every `health_interval` (15 s) and at once when the state changes:
  `PUT /api/bridges/discord/health`.
- **Stopping** (SIGTERM): stop reading Vonix, give queued calls `drain_seconds` (3 s) to go out,
  report `down`/`stopped`, close the gateway with 1000 and the Vonix connection.

Nothing logged holds the bot tokens or the webhook URL (it holds the webhook's token): log lines
name routes and status codes, errors only their class. httpx's own request log is silenced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

from realtime.client import Connected, Disconnected, Message, SubscriptionLost, VonixClient, VonixError
from server.bridges import markup
from server.bridges.discord_rest import DiscordRefused, DiscordRest, Dropped, QueueFull
from server.bridges.gateway import Gateway
from server.infra.breaker import BreakerPolicy, Breakers
from server.observability.logging import get_logger
from server.settings import Settings

log = get_logger("vonix.discord")

MAX_REMEMBERED = 10_000
PROFILE_TTL = 300.0


class ConfigMissing(Exception):
    pass


@dataclass(frozen=True)
class BridgeConfig:
    """What the bridge needs from the settings; the secrets stay out of its repr."""

    room: str
    channel_id: str
    bot_token: str = field(repr=False)
    webhook_url: str | None = field(repr=False)  # its path holds the webhook's token
    api_url: str
    gateway_url: str
    server_url: str
    public_url: str
    bridge_token: str = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> BridgeConfig:
        missing = [name for name, value in (
            ("DISCORD_BRIDGE_ROOM", settings.discord_bridge_room), ("DISCORD_CHANNEL_ID", settings.discord_channel_id),
            ("DISCORD_BOT_TOKEN", settings.discord_bot_token), ("BRIDGE_BOT_TOKEN", settings.bridge_bot_token),
        ) if not value]
        if missing:
            raise ConfigMissing(", ".join(missing))
        assert settings.discord_bot_token is not None and settings.bridge_bot_token is not None
        room = settings.discord_bridge_room
        webhook = settings.discord_webhook_url.get_secret_value() if settings.discord_webhook_url else None
        return cls(room=room if room.startswith("room:") else f"room:{room}",
                   channel_id=settings.discord_channel_id, bot_token=settings.discord_bot_token.get_secret_value(),
                   webhook_url=webhook or None, api_url=settings.discord_api_url.rstrip("/"),
                   gateway_url=settings.discord_gateway_url, server_url=settings.bridge_server_url.rstrip("/"),
                   public_url=(settings.public_url_setting or settings.bridge_server_url).rstrip("/"),
                   bridge_token=settings.bridge_bot_token.get_secret_value())

    @property
    def webhook_id(self) -> str | None:
        if not self.webhook_url:
            return None
        parts = urlsplit(self.webhook_url).path.split("/")
        return parts[parts.index("webhooks") + 1] if "webhooks" in parts[:-1] else None


class _Lru(OrderedDict[Any, Any]):
    def remember(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > MAX_REMEMBERED:
            self.popitem(last=False)


class DiscordBridge:
    def __init__(self, config: BridgeConfig, *, health_interval: float = 15.0, max_queue: int = 500,
                 breaker: BreakerPolicy | None = None, drain_seconds: float = 3.0,
                 vonix_backoff: tuple[float, float] = (0.5, 30.0),
                 gateway_backoff: tuple[float, float] = (1.0, 60.0)) -> None:
        self.config = config
        self.health_interval = health_interval
        self.drain_seconds = drain_seconds
        self.rest = DiscordRest(breakers=Breakers(breaker or BreakerPolicy(failure_threshold=5, reset_timeout=30.0,
                                                                           call_timeout=10.0)),
                                max_queue=max_queue, on_change=self._changed)
        self.gateway = Gateway(config.gateway_url, config.bot_token, self._on_dispatch, on_change=self._changed,
                               backoff=gateway_backoff)
        self.client = VonixClient(config.server_url, config.bridge_token, backoff=vonix_backoff)
        self.http = httpx.AsyncClient(base_url=config.server_url, timeout=10.0,
                                      headers={"Authorization": f"Bearer {config.bridge_token}"})
        self.vonix_connected = False
        self.dropped = 0
        self.sent: _Lru = _Lru()  # vonix offset -> Future[discord id | None]
        self.inbound: _Lru = _Lru()  # discord id -> vonix offset
        self.inbound_text: _Lru = _Lru()  # discord id -> the text last stored
        self.inbound_by_offset: _Lru = _Lru()  # vonix offset -> discord id
        self.profiles: dict[str, tuple[float, str, str | None]] = {}
        self.channel_names: dict[str, str] = {}
        self._changed_event = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_report: tuple[Any, ...] | None = None
        self.reports = 0
        self.failure: str | None = None  # why it stopped by itself (Vonix refused the token or the room)

    # --- lifecycle -------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run until `stop()`; then drain briefly and close everything."""
        logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines carry the webhook URL
        logging.getLogger("httpcore").setLevel(logging.WARNING)
        reporter = asyncio.create_task(self._report_loop(), name="discord-health")
        consumer = asyncio.create_task(self._from_vonix(), name="discord-from-vonix")
        await self.gateway.start()
        log.info("discord_bridge_started", room=self.config.room, channel=self.config.channel_id,
                 webhook=self.config.webhook_url is not None)
        try:
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({stop, consumer}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if consumer.done() and not consumer.cancelled() and consumer.exception() is not None:
                failure = consumer.exception()
                # VonixError texts come from the server ("closed with 4001 authentication failed"):
                # they never hold the token. Anything else: only its class.
                self.failure = str(failure)[:200] if isinstance(failure, VonixError) else \
                    failure.__class__.__name__
                log.error("discord_bridge_vonix_failed", error=self.failure)
        finally:
            self._stop.set()  # the reporter's loop ends too
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await consumer
            left = await self.rest.drain(self.drain_seconds)
            if left:
                log.warning("discord_outbound_dropped_on_stop", count=left)
            await self.gateway.close()
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reporter
            await self._report(final=True)
            for task in list(self._tasks):
                task.cancel()
            await self.rest.close()
            await self.client.close()
            await self.http.aclose()
            log.info("discord_bridge_stopped")

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _changed(self) -> None:
        self._changed_event.set()

    # --- health ----------------------------------------------------------------------------------
    async def health(self, *, final: bool = False) -> dict[str, Any]:
        breaker = await self.rest.breaker_state()
        gateway = self.gateway.state
        if final or gateway == "stopped" or (gateway != "connected" and breaker == "open"):
            state = "down"  # nothing flows either way
        elif gateway != "connected" or breaker != "closed" or not self.vonix_connected:
            state = "degraded"
        else:
            state = "ok"
        error = self.gateway.last_error if gateway != "connected" else (self.rest.last_error
                                                                         or self.gateway.last_error)
        return {"state": state, "gateway": "stopped" if final else gateway,
                "vonix": "connected" if self.vonix_connected else "disconnected",
                "queue": self.rest.pending, "dropped": self.dropped, "breaker": breaker,
                "last_error": error[:300] if error else None}

    async def _report_loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():  # (a flag too: 3.11's wait_for can swallow a cancellation)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.05, self.health_interval - (time.monotonic() - last))):
                    await self._changed_event.wait()
            self._changed_event.clear()
            health = await self.health()
            key = (health["state"], health["gateway"], health["breaker"], health["vonix"])
            if key != self._last_report or time.monotonic() - last >= self.health_interval:
                if await self._report(health=health):
                    self._last_report = key
                    last = time.monotonic()
            await asyncio.sleep(0.1)  # at most ten reports a second, however busy the queue is

    async def _report(self, *, final: bool = False, health: dict[str, Any] | None = None) -> bool:
        health = health or await self.health(final=final)
        try:
            response = await self.http.put("/api/bridges/discord/health", json=health)
        except httpx.HTTPError as exc:
            log.warning("discord_health_report_failed", error=exc.__class__.__name__)
            return False
        if response.status_code != 200:
            log.warning("discord_health_report_refused", status=response.status_code)
            return False
        self.reports += 1
        return True

    # --- Vonix -> Discord ------------------------------------------------------------------------
    async def _from_vonix(self) -> None:
        await self.client.connect()
        await self.client.subscribe(self.config.room)
        self.vonix_connected = True
        self._changed()
        async for event in self.client:
            if isinstance(event, Connected):
                self.vonix_connected = True
                self._changed()
            elif isinstance(event, Disconnected):
                self.vonix_connected = False
                self._changed()
            elif isinstance(event, SubscriptionLost):
                log.error("discord_bridge_room_lost", room=event.channel, error=event.error.code)
            elif isinstance(event, Message) and event.channel == self.config.room:
                try:
                    await self._outbound(event)
                except Exception as exc:
                    log.exception("discord_outbound_failed", offset=event.offset, error=exc.__class__.__name__)

    def _me(self) -> Any:
        return (self.client.user or {}).get("id")

    async def _outbound(self, message: Message) -> None:
        sender = message.sender
        data = message.data if isinstance(message.data, dict) else {}
        if sender is None or sender.get("id") == self._me():
            return
        kind = message.event
        if kind is None and isinstance(data.get("text"), str):
            name, avatar = await self._author(sender, data)
            content = await self._content(data["text"])
            self._send_new(message.offset, name, avatar, content)
        elif kind == "edit" and isinstance(data.get("text"), str):
            target = int(data["target"])
            if target in self.sent:
                name, _ = await self._author(sender, {})
                self._spawn(self._edit(target, await self._content(data["text"]), name))
        elif kind == "delete":
            target = int(data["target"])
            if target in self.sent:
                self._spawn(self._delete(target))
            elif target in self.inbound_by_offset:  # a moderator removed a relayed Discord message
                self._spawn(self._delete_on_discord(self.inbound_by_offset[target]))

    async def _content(self, text: str) -> str:
        names = {}
        for username in markup.mentioned_usernames(text):
            profile = await self._profile(username)
            if profile is not None:
                names[username] = profile[0]
        return markup.to_discord(text, names)

    async def _author(self, sender: dict[str, Any], data: dict[str, Any]) -> tuple[str, str | None]:
        via = data.get("via")
        if isinstance(via, dict) and isinstance(via.get("name"), str):
            avatar = via.get("avatar") if isinstance(via.get("avatar"), str) else None
            return markup.webhook_username(f"[{via.get('source', 'bridge')}] {via['name']}"), avatar
        username = str(sender.get("username") or "someone")
        profile = await self._profile(username)
        if profile is None:
            return markup.webhook_username(username), None
        return markup.webhook_username(profile[0]), profile[1]

    async def _profile(self, username: str) -> tuple[str, str | None] | None:
        """(display name, absolute avatar URL or None) of a Vonix member; None: no such member."""
        key = username.lower()
        cached = self.profiles.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return None if cached[1] == "" else (cached[1], cached[2])
        found: tuple[str, str | None] | None = (username, None)
        ttl = 30.0
        try:
            response = await self.http.get(f"/api/users/{quote(username, safe='')}")
            if response.status_code == 404:
                found, ttl = None, PROFILE_TTL
            elif response.status_code == 200:
                body = response.json()
                avatar = body.get("avatar") or {}
                url = avatar.get("large") or avatar.get("small")
                absolute = urljoin(self.config.public_url + "/", url) if isinstance(url, str) and url else None
                found, ttl = (str(body.get("display_name") or body.get("username") or username), absolute), PROFILE_TTL
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("discord_profile_lookup_failed", error=exc.__class__.__name__)
        if len(self.profiles) > 2000:
            self.profiles.clear()
        self.profiles[key] = (time.monotonic() + ttl, "" if found is None else found[0],
                              None if found is None else found[1])
        return found

    def _webhook_headers(self) -> dict[str, str]:
        return {}

    def _bot_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bot {self.config.bot_token}"}

    def _send_new(self, offset: int, name: str, avatar: str | None, content: str) -> None:
        webhook = self.config.webhook_url
        if webhook:
            body: dict[str, Any] = {"content": content, "username": name, "allowed_mentions": {"parse": []}}
            if avatar:
                body["avatar_url"] = avatar
            route, method, url, headers = "POST webhook", "POST", f"{webhook}?wait=true", self._webhook_headers()
        else:
            body = {"content": markup.cut(f"**{markup.escape_markdown(name)}**: {content}", markup.DISCORD_MAX),
                    "allowed_mentions": {"parse": []}}
            route, method, headers = "POST channel/messages", "POST", self._bot_headers()
            url = f"{self.config.api_url}/channels/{self.config.channel_id}/messages"
        try:
            future = self.rest.submit(route, method, url, body, headers)
        except (QueueFull, Dropped):
            self.dropped += 1
            log.warning("discord_outbound_dropped", offset=offset, kind="message", queue=self.rest.pending)
            self._changed()
            return
        self.sent.remember(offset, asyncio.ensure_future(self._message_id(offset, future)))

    async def _message_id(self, offset: int, future: asyncio.Future[Any]) -> str | None:
        try:
            answer = await future
        except (DiscordRefused, Dropped) as exc:
            log.warning("discord_outbound_failed", offset=offset, error=str(exc) if isinstance(
                exc, DiscordRefused) else "dropped")
            return None
        return str(answer["id"]) if isinstance(answer, dict) and answer.get("id") else None

    def _message_url(self, discord_id: str) -> tuple[str, str, dict[str, str]]:
        if self.config.webhook_url:
            return f"{self.config.webhook_url}/messages/{discord_id}", "webhook/messages", self._webhook_headers()
        return (f"{self.config.api_url}/channels/{self.config.channel_id}/messages/{discord_id}",
                "channel/messages/id", self._bot_headers())

    async def _edit(self, offset: int, content: str, name: str) -> None:
        sent = self.sent.get(offset)
        discord_id = await sent if sent is not None else None
        if discord_id is None:
            return
        url, route, headers = self._message_url(discord_id)
        if not self.config.webhook_url:
            content = markup.cut(f"**{markup.escape_markdown(name)}**: {content}", markup.DISCORD_MAX)
        await self._settle(offset, "edit", self.rest.submit(
            "PATCH " + route, "PATCH", url, {"content": content, "allowed_mentions": {"parse": []}}, headers))

    async def _delete(self, offset: int) -> None:
        sent = self.sent.get(offset)
        discord_id = await sent if sent is not None else None
        if discord_id is None:
            return
        url, route, headers = self._message_url(discord_id)
        await self._settle(offset, "delete", self.rest.submit("DELETE " + route, "DELETE", url, None, headers))

    async def _delete_on_discord(self, discord_id: str) -> None:
        url = f"{self.config.api_url}/channels/{self.config.channel_id}/messages/{discord_id}"
        with contextlib.suppress(QueueFull, Dropped, DiscordRefused):  # needs Manage Messages
            await self.rest.submit("DELETE channel/messages/id", "DELETE", url, None, self._bot_headers())

    async def _settle(self, offset: int, kind: str, future: asyncio.Future[Any]) -> None:
        try:
            await future
        except (DiscordRefused, Dropped) as exc:
            log.warning("discord_outbound_failed", offset=offset, kind=kind, error=exc.__class__.__name__)

    # --- Discord -> Vonix ------------------------------------------------------------------------
    def _ignored(self, data: dict[str, Any]) -> bool:
        if data.get("webhook_id"):
            return True  # ours (the echo of what we sent) or another integration's
        author = data.get("author") or {}
        return bool(author.get("bot")) or (author.get("id") is not None
                                           and str(author.get("id")) == self.gateway.user_id)

    async def _on_dispatch(self, kind: str, data: dict[str, Any]) -> None:
        if str(data.get("channel_id")) != self.config.channel_id:
            return
        if kind == "MESSAGE_CREATE" and not self._ignored(data):
            await self._inbound_create(data)
        elif kind == "MESSAGE_UPDATE" and "content" in data and not self._ignored(data):
            await self._inbound_edit(data)
        elif kind == "MESSAGE_DELETE":
            await self._inbound_delete(str(data.get("id")))
        elif kind == "MESSAGE_DELETE_BULK":
            for discord_id in data.get("ids") or []:
                await self._inbound_delete(str(discord_id))

    async def _text(self, data: dict[str, Any]) -> str:
        for channel_id in markup.channel_ids(str(data.get("content") or ""))[:5]:
            await self._channel_name(channel_id)
        return markup.from_discord(data, self.channel_names.get)

    async def _channel_name(self, channel_id: str) -> None:
        if channel_id in self.channel_names or len(self.channel_names) > 500:
            return
        url = f"{self.config.api_url}/channels/{channel_id}"
        try:
            answer = await asyncio.wait_for(self.rest.call("GET channels", "GET", url, None, self._bot_headers()), 3)
        except (TimeoutError, QueueFull, Dropped, DiscordRefused):
            return
        if isinstance(answer, dict) and isinstance(answer.get("name"), str):
            self.channel_names[channel_id] = answer["name"][:100]

    async def _inbound_create(self, data: dict[str, Any]) -> None:
        discord_id = str(data["id"])
        text = await self._text(data)
        if not text:
            return
        author = data.get("author") or {}
        payload: dict[str, Any] = {"text": text, "via": {
            "source": "discord", "name": markup.display_name(author, data.get("member")),
            "avatar": markup.avatar_url(author)}}
        reference = (data.get("message_reference") or {}).get("message_id")
        if reference is not None:
            offset = self.inbound.get(str(reference)) or self._sent_offset(str(reference))
            if offset is not None:
                payload["reply_to"] = offset
        offset = await self._vonix("publish", lambda: self.client.publish(
            self.config.room, payload, nonce=f"discord-{discord_id}"))
        if offset is not None:
            self.inbound.remember(discord_id, offset)
            self.inbound_text.remember(discord_id, text)
            self.inbound_by_offset.remember(offset, discord_id)

    def _sent_offset(self, discord_id: str) -> int | None:
        for offset, future in reversed(self.sent.items()):
            if future.done() and not future.cancelled() and future.result() == discord_id:
                return int(offset)
        return None

    async def _inbound_edit(self, data: dict[str, Any]) -> None:
        discord_id = str(data["id"])
        offset = self.inbound.get(discord_id)
        if offset is None:
            return  # sent before this bridge saw it: nothing of it in Vonix to change
        text = await self._text(data)
        if not text or text == self.inbound_text.get(discord_id):
            return
        if await self._vonix("edit", lambda: self.client.edit(self.config.room, offset, text)) is not None:
            self.inbound_text.remember(discord_id, text)

    async def _inbound_delete(self, discord_id: str) -> None:
        offset = self.inbound.pop(discord_id, None)
        if offset is None:
            return
        self.inbound_text.pop(discord_id, None)
        self.inbound_by_offset.pop(offset, None)
        await self._vonix("delete", lambda: self.client.delete(self.config.room, offset))

    async def _vonix(self, what: str, call: Callable[[], Any]) -> int | None:
        """A Vonix op, retried while the error is temporary (rate limits, a reconnect)."""
        for _ in range(8):
            try:
                return int(await call())
            except VonixError as exc:
                if not exc.temporary:
                    log.warning("discord_inbound_refused", op=what, code=exc.code)
                    return None
                await asyncio.sleep(min(exc.retry_after or 1.0, 10.0))
        log.warning("discord_inbound_gave_up", op=what)
        return None


async def serve(config: BridgeConfig, **options: Any) -> DiscordBridge:
    """Run the bridge until SIGTERM or SIGINT (or until Vonix refuses it for good)."""
    bridge = DiscordBridge(config, **options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, bridge.stop)
    await bridge.run()
    return bridge


def main(settings: Settings) -> int:
    """`vonix discord-bridge`: 0 after SIGTERM, 1 when Vonix refused it (a bad token, a room it may
    not read); ConfigMissing names the settings it needs."""
    bridge = asyncio.run(serve(BridgeConfig.from_settings(settings)))
    if bridge.failure is not None:
        print(f"vonix: discord-bridge stopped: {bridge.failure}", file=sys.stderr)
        return 1
    return 0

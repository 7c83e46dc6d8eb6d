"""A Python client for wire protocol v1 (docs/protocol.md), for bots.

    async with VonixClient("http://127.0.0.1:8000", token) as client:
        await client.subscribe("room:general")
        async for event in client:
            if isinstance(event, Message):
                await client.publish(event.channel, {"text": "pong"}, nonce=f"pong-{event.offset}")

The client authenticates with a first `auth` frame, remembers its channels and the last offset and
epoch it queued per channel, and when the connection drops it reconnects by itself: close codes
4000-4099 stop it (the iterator raises `Closed`), 1012 reconnects at once (with a little jitter),
anything else waits a capped exponential backoff with full jitter. On reconnect every channel is
subscribed again with `since`; the recovered messages are yielded before live ones, de-duplicated
by offset, and a `Gap` event says when the server could not fill the gap (`recovered: false`).

Events are queued for the iterator up to `max_events`. A consumer that falls further behind is
treated as the server treats a slow consumer: the connection is dropped and, once the consumer has
caught up, re-established with recovery, so nothing is lost and memory stays bounded.

The events, errors and backoff live in `client_events`, `client_errors` and `backoff`; they are
re-exported here, so `from realtime.client import ...` stays the one import a bot needs.

This module never imports the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from realtime.backoff import Backoff
from realtime.client_errors import BACKOFF, NOW, STOP, Closed, ConnectionLost, VonixError, close_action
from realtime.client_events import (
    Connected,
    Disconnected,
    Event,
    Gap,
    Join,
    Leave,
    Message,
    Notification,
    Push,
    SubscriptionLost,
    Typing,
)

log = logging.getLogger("vonix.client")

TokenSource = Callable[[], "str | Awaitable[str]"]

ABNORMAL = 1006


def split_frame(raw: str | bytes) -> list[dict[str, Any]]:
    """One server frame holds one or more JSON objects separated by `\\n`."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    return [orjson.loads(line) for line in text.split("\n") if line.strip()]


def websocket_url(url: str) -> str:
    """`http(s)://host[:port]` or `ws(s)://host[:port]` -> the `/ws` endpoint URL."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not an http(s) or ws(s) URL: {url!r}")
    path = parts.path if parts.path not in ("", "/") else "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


# --- the client ------------------------------------------------------------------------------------
@dataclass
class _Channel:
    offset: int
    epoch: str
    presence: bool | None = None  # the subscribe flag (None: the server's default, off for bots)


@dataclass
class _Pending:
    future: asyncio.Future[dict[str, Any]]
    on_reply: Callable[[dict[str, Any]], None] | None = None


_STOP = object()


@dataclass
class _Session:
    ws: ClientConnection
    authenticated: bool = False
    since: float = field(default_factory=time.monotonic)


class VonixClient:
    def __init__(self, url: str, token: str, *, reconnect: bool = True, backoff: tuple[float, float] = (0.5, 30.0),
                 refresh_token: TokenSource | None = None, request_timeout: float = 10.0,
                 connect_timeout: float = 10.0, max_events: int = 10_000, stable_after: float = 5.0) -> None:
        self.url = websocket_url(url)
        self.token = token
        self.reconnect = reconnect
        self.refresh_token = refresh_token
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.max_events = max_events
        self.stable_after = stable_after
        self.backoff = Backoff(*backoff)
        self.user: dict[str, Any] | None = None
        self.conn_id: str | None = None
        self.connections = 0  # successful authentications so far
        self._channels: dict[str, _Channel] = {}
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._events: asyncio.Queue[Any] = asyncio.Queue()  # bounded by hand: the stop marker always fits
        self._overflow = False
        self._session: _Session | None = None
        self._ready = asyncio.Event()  # connected and authenticated
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._failure: Closed | None = None
        self._finished = False
        self._background: set[asyncio.Task[None]] = set()
        self._caught_up = asyncio.Event()  # set by the iterator once an overflowed queue is half empty

    # --- lifecycle ---------------------------------------------------------------------------------
    async def __aenter__(self) -> VonixClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Start and wait for the first authenticated connection (retrying while `reconnect`)."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="vonix-client")
        await self._wait_ready(None)

    async def close(self) -> None:
        self._closing = True
        session = self._session
        if session is not None:
            with contextlib.suppress(Exception):
                await session.ws.close(1000, "client closing")
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._stop(None)

    def _stop(self, failure: Closed | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._failure = failure
        self._ready.set()  # wake waiters: they see the failure
        self._fail_pending(failure or Closed(1000, "client closed"))
        self._events.put_nowait(_STOP)

    async def _run(self) -> None:
        try:
            await self._supervise()
        except Exception as exc:  # a bug or an unusable URL: stop loudly rather than hang waiters
            log.exception("vonix client failed")
            self._stop(Closed(ABNORMAL, f"client error: {exc.__class__.__name__}"))

    async def _supervise(self) -> None:
        refreshed = False
        while not self._closing:
            if self._overflow:  # our consumer fell behind: let it catch up, then recover
                self._caught_up.clear()
                if self._events.qsize() > self.max_events // 2:
                    await self._caught_up.wait()
                self._overflow = False
            code, reason, session = await self._connect_and_serve()
            if self._closing:
                return
            if self._overflow:
                continue
            authenticated = session is not None and session.authenticated
            if authenticated:
                refreshed = False
                if session is not None and time.monotonic() - session.since >= self.stable_after:
                    self.backoff.reset()
            action = close_action(code)
            if (code == 4100 or (code == 4001 and not refreshed)) and self.refresh_token is not None:
                refreshed = await self._refresh_from_source()
                action = BACKOFF if refreshed else STOP
            if action == STOP or not self.reconnect:
                if authenticated:
                    self._emit(Disconnected(code, reason, None))
                log.warning("vonix client stopped: close code %s %s", code, reason)
                self._stop(Closed(code, reason))
                return
            delay = self.backoff.soon() if action == NOW and authenticated else self.backoff.next()
            if authenticated:
                self._emit(Disconnected(code, reason, round(delay, 3)))
            log.info("vonix client disconnected (%s %s); reconnecting in %.2f s", code, reason, delay)
            await asyncio.sleep(delay)

    async def _refresh_from_source(self) -> bool:
        assert self.refresh_token is not None
        try:
            token = self.refresh_token()
            if inspect.isawaitable(token):
                token = await token
        except Exception:
            log.exception("vonix client: refresh_token() failed")
            return False
        self.token = str(token)
        return True

    async def _connect_and_serve(self) -> tuple[int, str, _Session | None]:
        """One connection from handshake to close: (close code, reason, session or None)."""
        try:
            ws = await websockets.connect(self.url, compression=None, open_timeout=self.connect_timeout,
                                          max_size=2**27)
        except Exception as exc:  # refused, DNS, TLS, handshake status, timeout: all retried
            log.info("vonix client: cannot connect to %s: %s", self.url, exc.__class__.__name__)
            return ABNORMAL, "connect failed", None
        session = self._session = _Session(ws)
        reader = asyncio.create_task(self._read(ws), name="vonix-client-reader")
        try:
            try:
                reply = await self._call(ws, {"op": "auth", "token": self.token})
            except VonixError as exc:
                log.warning("vonix client: auth failed: %s", exc)
                with contextlib.suppress(TimeoutError):  # the server closes with its code next
                    await asyncio.wait_for(asyncio.shield(reader), self.connect_timeout)
            else:
                session.authenticated = True
                session.since = time.monotonic()
                self.user, self.conn_id = reply.get("user"), reply.get("conn_id")
                self.connections += 1
                self._emit(Connected(self.user or {}, self.conn_id or "", self.connections > 1))
                self._ready.set()
                if not await self._resubscribe(ws):
                    await ws.close(1000, "resubscribe failed")
                await reader
        finally:
            if not self._finished:
                self._ready.clear()
            self._session = None
            with contextlib.suppress(Exception):
                await ws.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._fail_pending(ConnectionLost())
        return ws.close_code or ABNORMAL, ws.close_reason or "", session

    async def _resubscribe(self, ws: ClientConnection) -> bool:
        """Every remembered channel again, with `since`: batch subscribes (one frame per 100
        channels with the same presence flag), so a reconnect costs the server one op, not N."""
        groups: dict[bool | None, list[tuple[str, _Channel]]] = {}
        for channel, state in self._channels.items():
            groups.setdefault(state.presence, []).append((channel, state))
        batches = [(flag, items[i:i + 100]) for flag, items in groups.items() for i in range(0, len(items), 100)]
        results = await asyncio.gather(*(self._resubscribe_batch(ws, flag, items) for flag, items in batches))
        return all(results)

    async def _resubscribe_batch(self, ws: ClientConnection, presence: bool | None,
                                 items: list[tuple[str, _Channel]]) -> bool:
        targets = {channel: {"offset": state.offset, "epoch": state.epoch} for channel, state in items}
        frame: dict[str, Any] = {"op": "subscribe", "channels": [
            {"channel": channel, "since": since} for channel, since in targets.items()]}
        if presence is not None:
            frame["presence"] = presence
        ok = True

        def on_reply(reply: dict[str, Any]) -> None:
            nonlocal ok
            for result in reply.get("results") or []:
                channel = result["channel"]
                if result.get("ok"):
                    self._on_subscribed(channel, targets[channel], result)
                    continue
                error = VonixError.from_reply(result.get("error") or {})
                if error.temporary:
                    ok = False
                elif error.code != "already_subscribed":
                    self._channels.pop(channel, None)
                    self._emit(SubscriptionLost(channel, error))
                    log.warning("vonix client: %s refused on resubscribe: %s", channel, error)

        try:
            await self._call(ws, frame, on_reply=on_reply)
        except VonixError as exc:
            return not exc.temporary
        return ok

    # --- frames in ---------------------------------------------------------------------------------
    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    objects = split_frame(raw)
                except orjson.JSONDecodeError:
                    log.warning("vonix client: a frame was not JSON; reconnecting")
                    await ws.close(1002, "invalid JSON")
                    return
                for obj in objects:
                    self._dispatch(obj)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._fail_pending(ConnectionLost())  # nothing more will answer them

    def _dispatch(self, obj: dict[str, Any]) -> None:
        if "ok" in obj:
            pending = self._pending.pop(obj["id"], None) if obj.get("id") is not None else None
            if pending is None:
                if not obj.get("ok"):
                    log.warning("vonix client: server error %s", obj.get("error"))
                return
            if pending.future.done():
                return
            if obj.get("ok"):
                if pending.on_reply is not None:
                    pending.on_reply(obj)  # before later frames: recovered messages precede live ones
                pending.future.set_result(obj)
            else:
                pending.future.set_exception(VonixError.from_reply(obj.get("error") or {}))
            return
        op = obj.get("op")
        if op == "message":
            self._on_message(obj, recovered=False)
        elif op == "presence_diff":  # one Join/Leave event per user, as before diffs existed
            for user in obj.get("joins") or []:
                self._emit(Join(obj["channel"], user))
            for user in obj.get("leaves") or []:
                self._emit(Leave(obj["channel"], user))
        elif op == "typing":
            self._emit(Typing(obj["channel"], obj.get("user") or {}))
        else:
            self._emit(Push(str(op), obj))

    def _on_message(self, frame: dict[str, Any], *, recovered: bool) -> None:
        channel = frame["channel"]
        state = self._channels.get(channel)
        if state is None:
            return  # unsubscribed meanwhile
        offset, epoch = int(frame["offset"]), str(frame["epoch"])
        if epoch == state.epoch and offset <= state.offset:
            return  # seen already (a recovery overlapping live delivery)
        kind = Notification if channel.startswith("user:") else Message
        event = kind(channel, offset, epoch, frame.get("data"), frame.get("from"), float(frame.get("ts") or 0),
                     recovered)
        if self._emit(event):
            state.offset, state.epoch = offset, epoch

    def _on_subscribed(self, channel: str, since: dict[str, Any] | None, reply: dict[str, Any],
                       presence: bool | None = None) -> None:
        initial = _Channel(int(since["offset"]), str(since["epoch"]), presence) if since else \
            _Channel(-1, str(reply["epoch"]), presence)
        state = self._channels.setdefault(channel, initial)
        if since is not None and not reply.get("recovered"):
            self._emit(Gap(channel, int(since["offset"]), int(reply["offset"]), str(reply["epoch"])))
        for frame in reply.get("missed") or []:
            self._on_message(frame, recovered=True)
        if self._overflow:
            return
        if state.epoch != reply["epoch"] or state.offset < reply["offset"]:
            state.offset, state.epoch = int(reply["offset"]), str(reply["epoch"])

    def _emit(self, event: Any) -> bool:
        if self._overflow or self._finished:
            return False
        if self._events.qsize() >= self.max_events:
            self._overflow = True
            log.warning("vonix client: %d events unread; dropping the connection until the reader catches up",
                        self.max_events)
            session = self._session
            if session is not None:
                task = asyncio.get_running_loop().create_task(session.ws.close(1000, "client overloaded"))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            return False
        self._events.put_nowait(event)
        return True

    def __aiter__(self) -> VonixClient:
        return self

    async def __anext__(self) -> Any:
        if self._finished and self._events.empty():
            if self._failure is not None:
                raise self._failure
            raise StopAsyncIteration
        event = await self._events.get()
        if self._overflow and self._events.qsize() <= self.max_events // 2:
            self._caught_up.set()
        if event is _STOP:
            self._events.put_nowait(_STOP)  # later calls end too
            if self._failure is not None:
                raise self._failure
            raise StopAsyncIteration
        return event

    # --- requests ----------------------------------------------------------------------------------
    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_exception(error)
                entry.future.exception()  # retrieved: no "never retrieved" warning if nobody awaits

    async def _call(self, ws: ClientConnection, frame: dict[str, Any],
                    on_reply: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(future, on_reply)
        try:
            await ws.send(orjson.dumps({"id": request_id, **frame}).decode())
        except websockets.ConnectionClosed:
            raise ConnectionLost() from None
        try:
            return await asyncio.wait_for(future, self.request_timeout)
        except TimeoutError:
            raise VonixError("timeout", f"no reply within {self.request_timeout:g} s", temporary=True) from None
        finally:
            self._pending.pop(request_id, None)

    async def _wait_ready(self, deadline: float | None) -> ClientConnection:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._finished:
                raise Closed(1000, "client closed")
            session = self._session
            if self._ready.is_set() and session is not None and session.authenticated:
                return session.ws
            timeout = None if deadline is None else deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                raise VonixError("timeout", "not connected", temporary=True) from None

    async def request(self, frame: dict[str, Any], *, retry: bool = False,
                      on_reply: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Send one frame when connected and wait for its reply; `retry` resends after a reconnect."""
        deadline = asyncio.get_running_loop().time() + self.request_timeout
        while True:
            ws = await self._wait_ready(deadline)
            try:
                return await self._call(ws, frame, on_reply)
            except ConnectionLost:
                if not retry:
                    raise

    async def subscribe(self, channel: str, *, since: tuple[int, str] | None = None,
                        presence: bool | None = None) -> None:
        """Subscribe and remember the channel (resubscribed with recovery after reconnects).
        `since=(offset, epoch)` recovers from a position the bot stored itself; `presence=True`
        asks for Join/Leave events (off by default for bot tokens)."""
        if channel in self._channels:
            return
        frame: dict[str, Any] = {"op": "subscribe", "channel": channel}
        position = None
        if since is not None:
            position = {"offset": since[0], "epoch": since[1]}
            frame["since"] = position
        if presence is not None:
            frame["presence"] = presence
        try:
            await self.request(frame, retry=True,
                               on_reply=lambda reply: self._on_subscribed(channel, position, reply, presence))
        except VonixError as exc:
            if exc.code != "already_subscribed":  # a concurrent subscribe() to the same channel won
                raise

    async def unsubscribe(self, channel: str) -> None:
        if self._channels.pop(channel, None) is None:
            return
        session = self._session
        if session is None or not session.authenticated:
            return  # not connected: forgetting it is enough, the next connection will not subscribe
        with contextlib.suppress(ConnectionLost):
            try:
                await self.request({"op": "unsubscribe", "channel": channel})
            except VonixError as exc:
                if exc.code != "not_subscribed":
                    raise

    async def publish(self, channel: str, data: Any, nonce: str | None = None) -> int:
        """Publish and return the message's offset. With a nonce the publish is idempotent, so it is
        resent after a reconnect; without one a lost connection raises ConnectionLost."""
        frame: dict[str, Any] = {"op": "publish", "channel": channel, "data": data}
        if nonce is not None:
            frame["nonce"] = nonce
        reply = await self.request(frame, retry=nonce is not None)
        return int(reply["offset"])

    async def edit(self, channel: str, offset: int, text: str) -> int:
        """Replace the text of your message at `offset`; returns the edit event's own offset."""
        reply = await self.request({"op": "edit", "channel": channel, "offset": offset, "data": {"text": text}})
        return int(reply["offset"])

    async def delete(self, channel: str, offset: int) -> int:
        """Delete your message (or, as a moderator, anyone's); returns the delete event's offset."""
        return int((await self.request({"op": "delete", "channel": channel, "offset": offset}))["offset"])

    async def react(self, channel: str, offset: int, emoji: str, *, on: bool = True) -> int:
        """Add (or with on=False remove) your reaction; returns the reaction event's offset."""
        frame = {"op": "react" if on else "unreact", "channel": channel, "offset": offset, "emoji": emoji}
        return int((await self.request(frame))["offset"])

    async def history(self, channel: str, *, since: int | None = None, epoch: str = "",
                      limit: int | None = None) -> list[Message]:
        frame: dict[str, Any] = {"op": "history", "channel": channel}
        if since is not None:
            frame["since"] = {"offset": since, "epoch": epoch}
        if limit is not None:
            frame["limit"] = limit
        reply = await self.request(frame, retry=True)
        return [Message(m["channel"], m["offset"], m["epoch"], m.get("data"), m.get("from"), m.get("ts", 0.0))
                for m in reply.get("messages", [])]

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        return list((await self.request({"op": "presence", "channel": channel}, retry=True))["users"])

    async def typing(self, channel: str) -> None:
        await self.request({"op": "typing", "channel": channel})

    async def refresh(self, token: str) -> float | None:
        """Swap in a fresh token on the live connection (the server closes with 4100 otherwise)."""
        reply = await self.request({"op": "refresh", "token": token})
        self.token = token
        return reply.get("expires_at")

    async def ping(self) -> float:
        started = time.monotonic()
        await self.request({"op": "ping"})
        return time.monotonic() - started


__all__ = [
    "BACKOFF", "NOW", "STOP",
    "Backoff", "Closed", "Connected", "ConnectionLost", "Disconnected", "Event", "Gap", "Join", "Leave",
    "Message", "Notification", "Push", "SubscriptionLost", "Typing", "VonixClient", "VonixError", "close_action",
    "split_frame", "websocket_url",
]

"""The node: connections in, broker and history out. Composes hub, broker, history, presence.

One broker subscription per channel per replica (first local subscriber subscribes, last one
unsubscribes); every broker message is opened once and handed to the hub as ready bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from realtime import errors, protocol
from realtime.batching import Batcher
from realtime.connection import GUEST, Connection, ConnUser, Flusher, TokenBucket
from realtime.errors import Disconnect, ReplyError
from realtime.group_commit import GroupCommit
from realtime.history.base import FrameParts, History, open_envelope
from realtime.hooks import ChannelHooks, Persisted
from realtime.hub import Hub
from realtime.ids import IdMaker
from realtime.logs import get_logger
from realtime.nonces import Nonces
from realtime.presence.base import Presence, PresenceUnavailable, PresenceUser
from realtime.presence.feed import PresenceFeed
from realtime.recent import RecentFrames
from realtime.transport import Transport

log = get_logger("vonix.node")
# How long a gap fill keeps retrying the database (a restart, a failover) before it gives up the
# gap and delivers what came after it.
FILL_RETRY_SECONDS = 60.0
REVOCATIONS = "_sys:revocations"
EVICTIONS = "_sys:evictions"  # a user removed from a channel (kick, room ban) or from the site (ban)
CATCH_UP_SECONDS = 2.0  # longest a new subscriber waits for this replica's stream to reach its reply
PRESENCE_NAMESPACES = ("room:", "dm:")


@dataclass(frozen=True)
class NodeSettings:
    max_subscriptions: int = 100
    max_connections_per_user: int = 20
    max_queue_bytes: int = 1 << 20
    coalesce_seconds: float = 0.002
    commit_window: float = 0.0  # group commit: at most one batch per window under load
    publish_rate: float = 10.0
    publish_burst: float = 20.0
    abuse_limit: int = 30
    typing_interval: float = 2.0
    max_inflight: int = 256  # pipelined chat publishes waiting for their commit, per connection
    read_rate: float = 5.0  # `read` markers per second per connection (clients send at most 1/s per channel)
    read_burst: float = 20.0
    auth_timeout: float = 10.0
    max_recovery: int = 1000
    recent_frames: int = 128  # per followed stored channel, for resubscribes (realtime/recent.py)
    presence_interval: float = 0.2  # presence diffs: at most one per channel per interval
    presence_heartbeat: float = 15.0
    presence_sweep: float = 10.0


class Node:
    def __init__(
        self,
        *,
        hooks: ChannelHooks,
        broker: Any,
        history: History,
        presence: Presence,
        nonces: Nonces,
        settings: NodeSettings | None = None,
        metrics: Any = None,
    ) -> None:
        self.hooks = hooks
        self.broker = broker
        self.history = history
        self.presence = presence
        self.nonces = nonces
        self.settings = settings or NodeSettings()
        self.hub = Hub()
        self._new_id = IdMaker(digits=8)  # connection ids: also presence keys, unique across replicas
        self._flusher = Flusher(self.settings.coalesce_seconds)  # one coalescing timer for all connections
        self.draining = False
        self.published = 0  # messages published through this replica (stats)
        self.tracer: Any = None  # an OpenTelemetry tracer when the host enables tracing
        self._tasks: list[asyncio.Task[None]] = []
        self._cleaned: set[str] = set()
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self._last_seen: dict[str, int] = {}  # last offset delivered locally, per channel (catch-up)
        self._epochs: dict[str, str] = {}  # epoch of each stored channel in _last_seen
        self._positioning: dict[str, asyncio.Future[None]] = {}  # a first subscriber reading the position
        self._catching_up: dict[str, list[tuple[Connection, int]]] = {}  # held until the stream reaches an offset
        self._filling: dict[str, list[tuple[int, bytes]]] = {}  # channels whose gap is being filled
        self._recent = RecentFrames(self.settings.recent_frames)  # what a resubscribe most often missed
        self._broker_was_down = False
        # persisted channels: stored in batches, published after the commit in commit order
        self.commits = GroupCommit(hooks, history, self._deliver_local, window=self.settings.commit_window)
        self.presence_feed = PresenceFeed(presence, history.publish_control,
                                          interval=self.settings.presence_interval, metrics=metrics)
        self._registrations: Batcher[tuple[int, str], bool] = Batcher(self._register_many)
        self._unregistrations: Batcher[tuple[int, str], None] = Batcher(self._unregister_many)
        # resubscribes with `since` read the hot window together: one pipeline for a crowd
        self._recoveries: Batcher[tuple[str, int, int], list[tuple[int, bytes]] | None] = Batcher(
            history.recover_many)
        self._metrics = _Metrics(metrics, self) if metrics is not None else None

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self.broker.on_message = self._on_broker_message
        self.broker.on_state = self._on_broker_state
        await self.broker.subscribe(REVOCATIONS)
        await self.broker.subscribe(EVICTIONS)
        self._tasks = [
            asyncio.create_task(self._presence_heartbeat(), name="presence-heartbeat"),
            asyncio.create_task(self._presence_sweep(), name="presence-sweep"),
        ]

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError):  # messages already queued are stored and published
            await asyncio.wait_for(self.commits.wait_idle(), timeout=5.0)
        await self.commits.close()
        await self.presence_feed.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for conn in list(self.hub.connections.values()):
            conn.disconnect(errors.SERVICE_RESTART)

    async def drain(self, window: float) -> None:
        """Close every connection with 1012, spread over a jittered window so clients reconnect to
        the other replicas gradually, not as a herd; queued frames are flushed first."""
        self.draining = True
        conns = list(self.hub.connections.values())
        if not conns:
            return
        # A timer per connection, not a task: draining 10,000 connections shares the core with the
        # replicas they reconnect to, so the drain itself must cost next to nothing.
        loop = asyncio.get_running_loop()
        start = loop.time()
        timers = [loop.call_at(start + random.uniform(0, window), conn.disconnect, errors.SERVICE_RESTART)
                  for conn in conns]
        try:
            await asyncio.sleep(window)
            closing = [c.close_task for c in conns if c.close_task is not None and not c.close_task.done()]
            if closing:  # queued frames and close frames still going out (each bounded to ~1 s)
                await asyncio.wait(closing, timeout=2.0)
        finally:
            for timer in timers:
                timer.cancel()

    # --- connections -----------------------------------------------------------------------------
    def open(self, transport: Transport) -> Connection:
        conn = Connection(
            self._new_id(), transport, max_queue_bytes=self.settings.max_queue_bytes,
            coalesce=self.settings.coalesce_seconds,
            limiter=TokenBucket(self.settings.publish_rate, self.settings.publish_burst),
            on_closed=self._on_conn_closed, flusher=self._flusher,
        )
        self.hub.add(conn)
        conn.start()
        return conn

    async def _register_many(self, entries: Sequence[tuple[int, str]]) -> Sequence[bool]:
        return await self.presence.register_connections(entries, self.settings.max_connections_per_user)

    async def _unregister_many(self, entries: Sequence[tuple[int, str]]) -> Sequence[None]:
        await self.presence.unregister_connections(entries)
        return [None] * len(entries)

    async def identify(self, conn: Connection, user: ConnUser) -> Disconnect | None:
        """Attach the authenticated user; enforce the per-user cap across replicas (connections
        arriving together are counted in one round trip)."""
        try:
            allowed = await self._registrations((user.user_id, conn.conn_id))
        except PresenceUnavailable:
            allowed = True  # Redis down: serving beats enforcing a cap we cannot count
            log.warning("connection_cap_unchecked", user_id=user.user_id)
        if not allowed:
            return errors.TOO_MANY_CONNECTIONS
        conn.user = user
        self.hub.identify(conn)
        self._schedule_expiry(conn)
        if len(self.hub.by_user.get(user.user_id, ())) == 1:
            self.hooks.user_online(user)
        return None

    def _schedule_expiry(self, conn: Connection) -> None:
        old = self._expiry.pop(conn.conn_id, None)
        if old is not None:
            old.cancel()
        user = conn.user
        if user is None or user.expires_at is None:
            return
        delay = max(0.0, user.expires_at - time.time())
        self._expiry[conn.conn_id] = asyncio.get_running_loop().call_later(
            delay, conn.disconnect, errors.TOKEN_EXPIRED)

    def _on_conn_closed(self, conn: Connection, reason: Disconnect | None) -> None:
        if reason is not None and self._metrics is not None:
            self._metrics.disconnects.labels(str(reason.code)).inc()
        task = asyncio.get_running_loop().create_task(self.cleanup(conn))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def cleanup(self, conn: Connection) -> None:
        """Forget a finished connection: presence leaves, broker unsubscribes, cap release."""
        if conn.conn_id in self._cleaned:
            return
        self._cleaned.add(conn.conn_id)
        conn.finished()
        timer = self._expiry.pop(conn.conn_id, None)
        if timer is not None:
            timer.cancel()
        channels = list(conn.subscriptions)
        emptied = self.hub.remove(conn)
        try:
            for channel in emptied:
                self._forget_channel(channel)
                await self.broker.unsubscribe(channel)
            if conn.user is not None:
                await self._leave_presence(conn, channels)
                if not conn.released:  # the read loop's own cleanup comes after this one
                    await self._unregistrations((conn.user.user_id, conn.conn_id))
                    conn.released = True
                    if not self.hub.by_user.get(conn.user.user_id):
                        self.hooks.user_offline(conn.user)
        except Exception as exc:  # Redis down: expiry and sweeps tidy up later
            log.warning("ws_cleanup_incomplete", conn_id=conn.conn_id, error=exc.__class__.__name__)
        finally:
            self._cleaned.discard(conn.conn_id)

    # --- frames ------------------------------------------------------------------------------------
    async def handle(self, conn: Connection, raw: str | bytes) -> None:
        if self._metrics is not None:
            self._metrics.frames_in.inc()
        try:
            command = protocol.parse(raw)
        except protocol.FrameError as exc:
            conn.push(protocol.error_reply(exc.request_id, exc.code, exc.message))
            return
        try:
            if command.op == "ping":
                conn.push(protocol.reply(command.id, pong=True))
            elif command.op == "auth":
                await self._auth(conn, command)
            elif conn.user is None:
                await self._as_guest(conn, command)
            elif command.op == "subscribe":
                await self._subscribe(conn, command)
            elif command.op == "unsubscribe":
                await self._unsubscribe(conn, command)
            elif command.op == "publish":
                await self._publish(conn, command)
            elif command.op == "history":
                await self._history(conn, command)
            elif command.op == "presence":
                await self._presence(conn, command)
            elif command.op == "typing":
                await self._typing(conn, command)
            elif command.op == "refresh":
                await self._refresh(conn, command)
            elif command.op == "read":
                await self._read(conn, command)
            elif command.op in protocol.AMEND_OPS:
                await self._amend(conn, command)
        except ReplyError as exc:
            conn.push(_refusal(command.id, exc))
        except Exception:
            log.exception("ws_op_failed", op=command.op, conn_id=conn.conn_id)
            conn.push(_refusal(command.id, None))

    async def _auth(self, conn: Connection, command: protocol.Command) -> None:
        if conn.user is not None:
            raise ReplyError(errors.ALREADY_AUTHENTICATED, "this connection is authenticated")
        try:
            user = await self.hooks.authenticate(command.token or "")
        except ReplyError as exc:
            conn.push(protocol.error_reply(command.id, exc.code, exc.message))
            conn.disconnect(errors.BAD_AUTH)
            return
        refused = await self.identify(conn, user)
        if refused is not None:
            conn.push(protocol.error_reply(command.id, errors.FORBIDDEN, refused.reason))
            conn.disconnect(refused)
            return
        conn.push(protocol.reply(command.id, user=user.public(), conn_id=conn.conn_id))

    def _scope(self, user: ConnUser, scope: str) -> None:
        if user.kind == "bot" and scope not in user.scopes:
            raise ReplyError(errors.FORBIDDEN, f"this bot token lacks the {scope!r} scope")

    async def _position(self, channel: str) -> tuple[int, str]:
        if self.hooks.persisted(channel):
            return await self.hooks.position(channel)
        published = await self.history.position(channel)
        return published.offset, published.epoch

    async def _subscribe_position(self, channel: str, first: bool, since: protocol.Since | None) -> tuple[int, str]:
        """Where a new subscriber starts. For a stored channel this replica already follows, the
        last offset delivered here is exact: every later message reaches the new subscriber live
        (it is in the hub before this runs), every earlier one it reads from history. That saves
        a database round trip per subscribe, which is what a reconnect storm is made of."""
        if not self.hooks.persisted(channel):
            return await self._position(channel)
        if not first:
            pending = self._positioning.get(channel)
            if pending is not None:  # the first subscriber is reading it: one query for the crowd
                with contextlib.suppress(Exception):
                    await asyncio.shield(pending)
            seen, epoch = self._last_seen.get(channel), self._epochs.get(channel)
            # A client coming from another replica may have seen more than this one has delivered
            # yet (its broker feed lags by a moment): then only the database knows the position.
            if seen is not None and epoch is not None and (
                    since is None or since.epoch != epoch or since.offset <= seen):
                return seen, epoch
        future = asyncio.get_running_loop().create_future()
        self._positioning.setdefault(channel, future)  # the first reader: later ones wait for it
        try:
            offset, epoch = await self._position(channel)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters read the database themselves
            raise
        else:
            future.set_result(None)
            self._last_seen.setdefault(channel, offset)
            self._epochs[channel] = epoch
        finally:
            if self._positioning.get(channel) is future:
                del self._positioning[channel]
        return offset, epoch

    def _forget_channel(self, channel: str) -> None:
        self._last_seen.pop(channel, None)
        self._epochs.pop(channel, None)
        self._catching_up.pop(channel, None)
        self._recent.forget(channel)

    async def _as_guest(self, conn: Connection, command: protocol.Command) -> None:
        """Before `auth`, a connection may follow public channels (and leave them): a signed-out
        page shows the game servers' status live. Anything else asks it to sign in first."""
        if command.op == "subscribe":
            channels = [command.channel] if command.channels is None else [t.channel for t in command.channels]
            if all(channel is not None and self.hooks.public(channel) for channel in channels):
                await self._subscribe(conn, command)
                return
        elif command.op == "unsubscribe" and command.channel in conn.subscriptions:
            await self._unsubscribe(conn, command)
            return
        raise ReplyError(errors.NOT_AUTHENTICATED, "send an auth frame first")

    async def _subscribe(self, conn: Connection, command: protocol.Command) -> None:
        user = conn.user or GUEST
        listen = command.presence if command.presence is not None else user.kind == "user"
        if command.channels is None:
            assert command.channel is not None
            result = await self._subscribe_one(conn, command.channel, command.since, listen)
            if isinstance(result, ReplyError):
                raise result
            # Nothing awaits between these lines: the reply, then the live frames that arrived meanwhile.
            conn.push(b'{"id":%d,"ok":true,%s}' % (command.id, result[0]))
            self._end_recovery(conn, command.channel, result[1])
            await self._join_presence(conn, [command.channel])
            return
        parts: list[bytes] = []
        subscribed: list[tuple[str, int]] = []
        for target in command.channels:  # one at a time: the node's per-channel steps do not interleave
            result = await self._subscribe_one(conn, target.channel, target.since, listen)
            if isinstance(result, ReplyError):
                parts.append(b'{"channel":%s,"ok":false,"error":%s}' % (
                    orjson.dumps(target.channel), protocol.error_object(result.code, result.message,
                                                                        temporary=result.temporary)))
            else:
                parts.append(b'{"ok":true,%s}' % result[0])
                subscribed.append((target.channel, result[1]))
        conn.push(b'{"id":%d,"ok":true,"results":[%s]}' % (command.id, b",".join(parts)))
        for channel, last in subscribed:
            self._end_recovery(conn, channel, last)
        await self._join_presence(conn, [channel for channel, _ in subscribed])

    async def _subscribe_one(self, conn: Connection, channel: str, since: protocol.Since | None,
                             listen: bool) -> tuple[bytes, int] | ReplyError:
        """Subscribe one channel, leaving it in recovery (live frames buffered): returns the reply's
        fields and the last offset they cover, or the refusal. The caller pushes the reply, then
        ends the recovery."""
        user = conn.user or GUEST
        if channel in conn.subscriptions:
            return ReplyError(errors.ALREADY_SUBSCRIBED, "already subscribed")
        if len(conn.subscriptions) >= self.settings.max_subscriptions:
            return ReplyError(errors.TOO_MANY_SUBSCRIPTIONS,
                              f"at most {self.settings.max_subscriptions} subscriptions per connection")
        try:
            self._scope(user, "subscribe")
            await self.hooks.authorize(user, channel, "subscribe")
        except ReplyError as exc:
            return exc
        first = self.hub.subscribe(conn, channel, recovering=True)
        if not listen and channel.startswith(PRESENCE_NAMESPACES):
            conn.mute_presence(channel)
        try:
            if first:
                await self.broker.subscribe(channel)
            offset, epoch = await self._subscribe_position(channel, first, since)
            missed: list[tuple[int, bytes]] = []
            recovered = False
            if since is not None:
                missed, recovered = await self._recover(channel, since, offset, epoch)
        except Exception as exc:
            log.warning("ws_subscribe_failed", conn_id=conn.conn_id, channel=channel,
                        error=f"{exc.__class__.__name__}: {exc}"[:200])
            if self.hub.unsubscribe(conn, channel):
                self._forget_channel(channel)
                with contextlib.suppress(Exception):
                    await self.broker.unsubscribe(channel)
            return ReplyError(errors.UNAVAILABLE, "cannot subscribe right now", temporary=True)
        return b'"channel":%s,"offset":%d,"epoch":%s,"recovered":%s,"missed":[%s]' % (
            orjson.dumps(channel), offset, orjson.dumps(epoch), b"true" if recovered else b"false",
            b",".join(frame for _, frame in missed)), max([offset, *(o for o, _ in missed)])

    def _end_recovery(self, conn: Connection, channel: str, last: int) -> None:
        """Send the live frames buffered during the subscribe that are newer than the reply.

        The reply may be ahead of this replica's live stream (the position came from the database
        because the client had seen more elsewhere, or from a commit not yet delivered here): then
        the connection stays buffering until the stream reaches `last`, so the frames it already
        has are not sent again (or for at most CATCH_UP_SECONDS, if the stream stalls)."""
        seen = self._last_seen.get(channel)
        if seen is not None and seen < last and self.hooks.persisted(channel):
            waiting = self._catching_up.setdefault(channel, [])
            waiting.append((conn, last))
            asyncio.get_running_loop().call_later(CATCH_UP_SECONDS, self._release_late, conn, channel, last)
            return
        self._send_buffered(conn, channel, last)

    def _send_buffered(self, conn: Connection, channel: str, last: int) -> None:
        for frame_offset, frame in self.hub.end_recovery(conn, channel):
            if frame_offset > last:
                conn.push(frame)

    def _release(self, channel: str, offset: int) -> None:
        """The live stream reached `offset`: subscribers held until then get their frames."""
        waiting = self._catching_up.get(channel)
        if not waiting:
            return
        ready = [entry for entry in waiting if entry[1] <= offset]
        if not ready:
            return
        waiting[:] = [entry for entry in waiting if entry[1] > offset]
        if not waiting:
            del self._catching_up[channel]
        for conn, last in ready:
            if channel in conn.recovering:
                self._send_buffered(conn, channel, last)

    def _release_late(self, conn: Connection, channel: str, last: int) -> None:
        waiting = self._catching_up.get(channel)
        if waiting and (conn, last) in waiting:
            waiting.remove((conn, last))
            if not waiting:
                del self._catching_up[channel]
            if channel in conn.recovering:
                self._send_buffered(conn, channel, last)

    async def _recover(self, channel: str, since: protocol.Since, offset: int,
                       epoch: str) -> tuple[list[tuple[int, bytes]], bool]:
        if since.epoch != epoch or since.offset > offset:
            self._miss()
            return [], False
        if since.offset == offset:
            return [], True
        if offset - since.offset > self.settings.max_recovery:
            self._miss()
            return [], False
        persisted = self.hooks.persisted(channel)
        if persisted:
            missed = self._recent.between(channel, epoch, since.offset, offset)
            if missed is not None:  # delivered here moments ago: no store involved
                self._recovered("memory")
                return missed, True
        missed = await self._recoveries((channel, since.offset, self.settings.max_recovery))
        source = "hot_window"
        if persisted and missed and missed[-1][0] < offset and missed[0][0] == since.offset + 1:
            # The hot window lags what this replica delivered (a commit reaches Redis a moment
            # after its local delivery; under load, more than a moment): the newest frames are in
            # memory. Without this, a storm sent most resubscribes to the database.
            newest = self._recent.between(channel, epoch, missed[-1][0], offset)
            if newest is not None:
                missed = missed + newest
        if persisted and (missed is None or not _covers(missed, since.offset + 1, offset)):
            # The hot window is behind the database (a commit not yet published to it, or a hole
            # left while Redis was away): the database has every stored message.
            missed = await self.hooks.history(channel, since.offset, self.settings.max_recovery)
            source = "database"
        if missed is None or not _covers(missed, since.offset + 1, offset):
            self._miss()
            return [], False
        self._recovered(source)
        return missed, True

    def _recovered(self, source: str) -> None:
        if self._metrics is not None:
            self._metrics.recoveries.labels(source).inc()

    def _miss(self) -> None:
        if self._metrics is not None:
            self._metrics.history_misses.inc()

    async def _unsubscribe(self, conn: Connection, command: protocol.Command) -> None:
        channel = command.channel
        assert channel is not None
        if channel not in conn.subscriptions:
            raise ReplyError(errors.NOT_SUBSCRIBED, "not subscribed to that channel")
        if self.hub.unsubscribe(conn, channel):
            self._forget_channel(channel)
            await self.broker.unsubscribe(channel)
        conn.push(protocol.reply(command.id))
        await self._leave_presence(conn, [channel])

    def _take_publish_token(self, conn: Connection) -> bool:
        """The connection's publish rate (publishes and message edits, deletes, reactions alike):
        False when the connection was closed for abusing it; ReplyError(rate_limited) when over."""
        wait = conn.limiter.take()
        if wait:
            conn.rejections += 1
            if self._metrics is not None:
                self._metrics.rate_limited.inc()
            if conn.rejections > self.settings.abuse_limit:
                conn.disconnect(errors.ABUSE)
                return False
            raise ReplyError(errors.RATE_LIMITED, "publishing too fast", temporary=True, retry_after=wait)
        conn.rejections = max(0, conn.rejections - 1)
        return True

    async def _publish(self, conn: Connection, command: protocol.Command) -> None:
        channel, user = command.channel, conn.user
        assert channel is not None and user is not None
        if not self._take_publish_token(conn):
            return
        self._scope(user, "publish")
        await self.hooks.authorize(user, channel, "publish")
        if self.hooks.persisted(channel) and self.tracer is None:
            await self._publish_pipelined(conn, command)
            return
        published = await self.publish(channel, command.data, user=user, nonce=command.nonce)
        conn.push(protocol.reply(command.id, offset=published[0], epoch=published[1]))

    async def _publish_pipelined(self, conn: Connection, command: protocol.Command) -> None:
        """Queue a chat message and read the connection's next frame without waiting for the commit.

        Awaiting each commit acknowledged one message per commit window per connection (~100/s),
        whatever the load: a bridge bot relaying a busy game server publishes from one connection.
        Messages are queued in frame order and the group commit stores and publishes in queue order,
        so offsets keep the connection's order; the reply is pushed when its message is stored
        (replies to later requests may come first: clients match replies by id). At most
        `max_inflight` publishes wait per connection; beyond that the reader waits (backpressure).
        """
        channel, user = command.channel, conn.user
        assert channel is not None and user is not None
        data = await self.hooks.validate(channel, command.data, user)
        while conn.inflight >= self.settings.max_inflight and conn.last_publish is not None:
            await asyncio.wait([conn.last_publish])
        self.published += 1
        future = self.commits.enqueue(user, channel, data, command.nonce, time.time())
        conn.inflight += 1
        conn.last_publish = future
        request_id = command.id

        def acknowledge(done: asyncio.Future[Persisted]) -> None:
            conn.inflight -= 1
            if conn.last_publish is done:
                conn.last_publish = None
            if done.cancelled():
                return
            error = done.exception()
            if error is None:
                stored = done.result()
                conn.push(protocol.reply(request_id, offset=stored.offset, epoch=stored.epoch))
                return
            if not isinstance(error, ReplyError):
                log.warning("ws_publish_failed", conn_id=conn.conn_id, error=error.__class__.__name__)
            conn.push(_refusal(request_id, error if isinstance(error, ReplyError) else None))

        future.add_done_callback(acknowledge)

    async def publish(self, channel: str, data: Any, *, user: ConnUser | None = None,
                      nonce: str | None = None) -> tuple[int, str]:
        """Publish on behalf of a user or the server (REST fallback, notifications)."""
        if self.tracer is None:
            return await self._publish_untraced(channel, data, user, nonce)
        with self.tracer.start_as_current_span("realtime publish", attributes={
                "messaging.system": "vonix", "messaging.destination.name": channel}):
            return await self._publish_untraced(channel, data, user, nonce)

    async def _publish_untraced(self, channel: str, data: Any, user: ConnUser | None,
                                nonce: str | None) -> tuple[int, str]:
        ts = time.time()
        self.published += 1
        if self.hooks.persisted(channel):
            data = await self.hooks.validate(channel, data, user)
            stored = await self.commits.store(user, channel, data, nonce, ts)
            return stored.offset, stored.epoch
        sender = user.public() if user is not None else None
        if nonce is not None and user is not None:
            earlier = await self.nonces.claim(user.user_id, nonce)
            if earlier is not None:
                position = await self.history.position(channel)
                return earlier, position.epoch
        published = await self.history.publish(channel, FrameParts.message(channel, data, sender, ts))
        if nonce is not None and user is not None:
            await self.nonces.settle(user.user_id, nonce, published.offset)
        return published.offset, published.epoch

    async def _amend(self, conn: Connection, command: protocol.Command) -> None:
        channel, user = command.channel, conn.user
        assert channel is not None and user is not None and command.offset is not None
        if not self._take_publish_token(conn):
            return
        self._scope(user, "publish")
        offset, epoch = await self.amend(channel, command.op, command.offset, user, data=command.data,
                                         emoji=command.emoji)
        conn.push(protocol.reply(command.id, channel=channel, offset=offset, epoch=epoch))

    async def amend(self, channel: str, op: str, target: int, user: ConnUser, *, data: Any = None,
                    emoji: str | None = None) -> tuple[int, str]:
        """Edit, delete or react to a stored message (websocket ops and REST): the change is an
        event on the channel with its own offset, stored and published in order with messages, so
        recovery and history replay it like any message."""
        if not self.hooks.persisted(channel):
            raise ReplyError(errors.INVALID_CHANNEL, "only stored channels (rooms and DMs) have editable messages")
        await self.hooks.authorize(user, channel, "amend")
        event = await self.hooks.amendment(user, channel, op, target, data, emoji)
        self.published += 1
        stored = await self.commits.store(user, channel, event, None, time.time())
        return stored.offset, stored.epoch

    async def _history(self, conn: Connection, command: protocol.Command) -> None:
        channel, user = command.channel, conn.user
        assert channel is not None and user is not None
        self._scope(user, "history")
        await self.hooks.authorize(user, channel, "history")
        limit = command.limit or 50
        offset, epoch = await self._position(channel)
        after = command.since.offset if command.since is not None else max(0, offset - limit)
        frames: list[tuple[int, bytes]] | None = await self.history.recover(channel, after, limit)
        if frames is None and self.hooks.persisted(channel):
            frames = await self.hooks.history(channel, after, limit)
        frames = frames or []
        conn.push(b'{"id":%d,"ok":true,"channel":%s,"offset":%d,"epoch":%s,"messages":[%s]}' % (
            command.id, orjson.dumps(channel), offset, orjson.dumps(epoch), b",".join(f for _, f in frames)))

    async def _presence(self, conn: Connection, command: protocol.Command) -> None:
        channel, user = command.channel, conn.user
        assert channel is not None and user is not None
        self._scope(user, "presence")
        await self.hooks.authorize(user, channel, "presence")
        users = await self.presence.users(channel)
        conn.push(protocol.reply(command.id, channel=channel, users=[u.as_dict() for u in users]))

    async def _typing(self, conn: Connection, command: protocol.Command) -> None:
        channel, user = command.channel, conn.user
        assert channel is not None and user is not None
        if channel not in conn.subscriptions:
            raise ReplyError(errors.NOT_SUBSCRIBED, "subscribe before typing")
        now = time.monotonic()
        last = conn.typing_at.get(channel, 0.0)
        if now - last < self.settings.typing_interval:
            raise ReplyError(errors.RATE_LIMITED, "typing is sent at most every "
                             f"{self.settings.typing_interval:g} s", temporary=True,
                             retry_after=self.settings.typing_interval - (now - last))
        conn.typing_at[channel] = now
        await self.history.publish_control(channel, protocol.typing_push(channel, user.public()))
        conn.push(protocol.reply(command.id))

    async def _read(self, conn: Connection, command: protocol.Command) -> None:
        """Read markers travel on the socket: a busy room used to cost one HTTP request per
        message received, which exhausted the client's API budget."""
        channel, user = command.channel, conn.user
        assert channel is not None and user is not None and command.offset is not None
        if not self.hooks.persisted(channel):
            raise ReplyError(errors.INVALID_CHANNEL, "read markers are kept for rooms and direct messages")
        if conn.read_limiter is None:  # made on first use: most connections (bots) never send one
            conn.read_limiter = TokenBucket(self.settings.read_rate, self.settings.read_burst)
        wait = conn.read_limiter.take()
        if wait:
            raise ReplyError(errors.RATE_LIMITED, "read markers are sent too fast", temporary=True,
                             retry_after=wait)
        self._scope(user, "history")
        await self.hooks.authorize(user, channel, "history")
        state = await self.hooks.mark_read(user, channel, command.offset)
        conn.push(protocol.reply(command.id, channel=channel, **state))

    async def _refresh(self, conn: Connection, command: protocol.Command) -> None:
        user = conn.user
        assert user is not None
        fresh = await self.hooks.authenticate(command.token or "")
        if fresh.user_id != user.user_id:
            raise ReplyError(errors.INVALID_TOKEN, "the token belongs to another user")
        if user.session_id and fresh.session_id and fresh.session_id != user.session_id:
            self.hub._discard(self.hub.by_session, user.session_id, conn)
            self.hub.by_session.setdefault(fresh.session_id, set()).add(conn)
        conn.user = fresh
        self._schedule_expiry(conn)
        conn.push(protocol.reply(command.id, expires_at=fresh.expires_at))

    # --- presence ----------------------------------------------------------------------------------
    async def _join_presence(self, conn: Connection, channels: list[str]) -> None:
        """A connection's channels join presence together (a batch subscribe): one batch item list,
        no task per channel."""
        user = conn.user
        if user is not None:  # guests follow no presence channel
            await self.presence_feed.join([c for c in channels if c.startswith(PRESENCE_NAMESPACES)],
                                          conn.conn_id, PresenceUser(user.user_id, user.username))

    async def _leave_presence(self, conn: Connection, channels: list[str]) -> None:
        user = conn.user
        if user is not None:
            await self.presence_feed.leave([c for c in channels if c.startswith(PRESENCE_NAMESPACES)],
                                           conn.conn_id, PresenceUser(user.user_id, user.username))

    async def _presence_heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.presence_heartbeat * random.uniform(0.8, 1.0))
            try:
                entries = [(channel, conn.conn_id) for conn in self.hub.connections.values()
                           for channel in conn.subscriptions if channel.startswith(PRESENCE_NAMESPACES)]
                users = [(conn.user.user_id, conn.conn_id) for conn in self.hub.connections.values()
                         if conn.user is not None]
                if entries:
                    lost = await self.presence.heartbeat(entries) or []
                    for channel, conn_id in lost:  # swept while we were late: join again
                        conn = self.hub.connections.get(conn_id)
                        if conn is not None and channel in conn.subscriptions:
                            await self._join_presence(conn, [channel])
                if users:
                    await self.presence.heartbeat_connections(users)
            except Exception as exc:
                log.warning("presence_heartbeat_failed", error=exc.__class__.__name__)

    async def _presence_sweep(self) -> None:
        while True:
            await asyncio.sleep(self.settings.presence_sweep * random.uniform(0.8, 1.2))
            try:
                for channel, user in await self.presence.sweep():
                    self.presence_feed.report(channel, user, join=False)
            except Exception as exc:
                log.warning("presence_sweep_failed", error=exc.__class__.__name__)

    # --- broker ------------------------------------------------------------------------------------
    def _on_broker_message(self, channel: str, payload: bytes) -> None:
        if channel.startswith("_sys:"):
            self._on_system(channel, payload)
            return
        offset, ts, frame = open_envelope(payload)
        self._deliver_local(channel, offset, frame, ts)

    def _deliver_local(self, channel: str, offset: int | None, frame: bytes, ts: float) -> None:
        if offset is not None and self.hooks.persisted(channel):
            filling = self._filling.get(channel)
            if filling is not None:  # a gap is being filled from storage: keep order
                filling.append((offset, frame))
                return
            seen = self._last_seen.get(channel)
            if seen is not None:
                if offset <= seen:
                    return  # already delivered here (local fallback, or a catch-up overlap)
                if offset > seen + 1:  # messages published while we could not hear them
                    self._filling[channel] = [(offset, frame)]
                    self._spawn_fill(channel, seen)
                    return
            self._advance(channel, offset, frame)
        if offset is None and frame.startswith(protocol.PRESENCE_DIFF_PREFIX):
            delivered = self.hub.deliver_presence(channel, frame)
        else:
            delivered = self.hub.deliver(channel, offset, frame)
        if self._catching_up and offset is not None:
            self._release(channel, offset)
        metrics = self._metrics
        if metrics is not None and delivered:
            metrics.delivered.inc(delivered)
            if ts:
                metrics.latency.observe(max(0.0, time.time() - ts))

    def _advance(self, channel: str, offset: int, frame: bytes) -> None:
        """The stored channel's stream moved to `offset` here: the one place that records it, so the
        live path and a gap fill keep the position and the recent frames in step."""
        self._last_seen[channel] = offset
        self._recent.add(channel, self._epochs.get(channel), offset, frame)

    async def _on_broker_state(self, connected: bool) -> None:
        if not connected:
            self._broker_was_down = True
            return
        if not self._broker_was_down:
            return
        self._broker_was_down = False
        asyncio.get_running_loop().create_task(self._catch_up())

    async def _catch_up(self) -> None:
        """After a broker outage, deliver what other replicas published meanwhile (from storage)."""
        fills = []
        for channel in list(self.hub.channels):
            last = self._last_seen.get(channel)
            if last is None or not self.hooks.persisted(channel) or channel in self._filling:
                continue
            self._filling[channel] = []
            fills.append(self._fill(channel, last))
        await asyncio.gather(*fills)
        log.info("broker_catch_up_done", channels=len(fills))

    def _spawn_fill(self, channel: str, after: int) -> None:
        task = asyncio.get_running_loop().create_task(self._fill(channel, after))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _fill(self, channel: str, after: int) -> None:
        """Deliver stored messages after `after`, then what arrived live meanwhile, in offset order.

        The database read is retried (0.2 s doubling to 2 s, for up to FILL_RETRY_SECONDS) while
        live frames keep waiting behind it: delivering them after a failed read would move the
        channel past the gap for good, and a quiet channel would never see the missing message
        (the soak lost messages so while PostgreSQL restarted)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + FILL_RETRY_SECONDS
        delay = 0.2
        while True:
            try:
                stored = await self.hooks.history(channel, after, self.settings.max_recovery)
                break
            except Exception as exc:
                if loop.time() + delay > give_up:
                    log.error("gap_fill_failed", channel=channel, error=exc.__class__.__name__, after=after)
                    stored = []
                    break
                log.warning("gap_fill_retry", channel=channel, error=exc.__class__.__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        buffered = self._filling.pop(channel, [])
        merged = dict(stored)
        merged.update(buffered)
        last = self._last_seen.get(channel, after)
        for offset in sorted(merged):
            if offset > last:
                self._advance(channel, offset, merged[offset])
                last = offset
                delivered = self.hub.deliver(channel, offset, merged[offset])
                if self._catching_up:
                    self._release(channel, offset)
                if self._metrics is not None and delivered:
                    self._metrics.delivered.inc(delivered)

    async def evict(self, user_id: int, channel: str | None, reason: str) -> None:
        """On every replica: unsubscribe the user's connections from `channel` (a `removed` push
        tells the client why), or with channel None close them all (4007 banned). Delivered
        through the broker like messages, so it takes effect everywhere within its latency."""
        payload = orjson.dumps({"user_id": user_id, "channel": channel, "reason": reason})
        try:
            await self.broker.publish(EVICTIONS, payload)
        except Exception as exc:  # the broker is down: at least this replica acts now
            log.warning("eviction_publish_failed", user_id=user_id, error=exc.__class__.__name__)
            self._on_system(EVICTIONS, payload)

    def _evict_local(self, user_id: int, channel: str | None, reason: str) -> None:
        for conn in list(self.hub.by_user.get(user_id, ())):
            if channel is None:
                conn.disconnect(errors.BANNED)
            elif channel in conn.subscriptions:
                if self.hub.unsubscribe(conn, channel):
                    self._forget_channel(channel)
                    self._spawn_quietly(self.broker.unsubscribe(channel))
                conn.push(protocol.removed_push(channel, reason))
                self._spawn_quietly(self._leave_presence(conn, [channel]))

    def _spawn_quietly(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _on_system(self, channel: str, payload: bytes) -> None:
        if channel == EVICTIONS:
            try:
                order = orjson.loads(payload)
                self._evict_local(int(order["user_id"]), order.get("channel"), str(order.get("reason", "")))
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
                log.warning("eviction_unreadable")
            return
        if channel == REVOCATIONS:
            try:
                sessions = orjson.loads(payload).get("sessions", [])
            except (orjson.JSONDecodeError, AttributeError):
                return
            for conn in self.hub.sessions(sessions):
                conn.disconnect(errors.SESSION_REVOKED)


def _refusal(request_id: int, exc: ReplyError | None) -> bytes:
    """The error reply for a refused op; None: an unexpected fault (temporary, retry later)."""
    if exc is None:
        return protocol.error_reply(request_id, errors.UNAVAILABLE, "temporarily unavailable", temporary=True)
    return protocol.error_reply(request_id, exc.code, exc.message, temporary=exc.temporary,
                                retry_after=exc.retry_after, details=exc.details)


def _covers(frames: list[tuple[int, bytes]], first: int, last: int) -> bool:
    """True when `frames` hold every offset from `first` to `last`, in order, without a gap."""
    if not frames or frames[0][0] != first or frames[-1][0] < last:
        return False
    return all(b[0] == a[0] + 1 for a, b in itertools.pairwise(frames))


class _Metrics:
    def __init__(self, metrics: Any, node: Node) -> None:
        self.frames_in = metrics.counter("vonix_ws_frames_in_total", "Client frames received.")
        self.delivered = metrics.counter("vonix_ws_messages_delivered_total",
                                         "Frames queued to local subscribers (messages out).")
        self.latency = metrics.histogram(
            "vonix_ws_publish_to_delivery_seconds", "Publish to local fan-out latency, per message and replica.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
        self.disconnects = metrics.counter("vonix_ws_disconnects_total",
                                           "Server-initiated disconnects by close code.", ("code",))
        self.history_misses = metrics.counter("vonix_ws_history_misses_total",
                                              "Recoveries that could not fill the client's gap.")
        self.recoveries = metrics.counter("vonix_ws_recoveries_total",
                                          "Resubscribes whose gap was filled, by where the missed messages came "
                                          "from (memory: this replica's recent frames; hot_window: Redis; "
                                          "database).", ("source",))
        recent = metrics.gauge("vonix_ws_recent_frames", "Frames kept in memory for resubscribes.")
        recent.set_function(lambda: len(node._recent))
        self.rate_limited = metrics.counter("vonix_ws_rate_limited_total", "Publishes refused by the rate limit.")
        connections = metrics.gauge("vonix_ws_connections", "Open websocket connections on this replica.")
        connections.set_function(lambda: len(node.hub.connections))
        subscriptions = metrics.gauge("vonix_ws_subscriptions", "Channel subscriptions on this replica.")
        subscriptions.set_function(node.hub.subscription_count)
        channels = metrics.gauge("vonix_ws_channels", "Channels with at least one local subscriber.")
        channels.set_function(lambda: len(node.hub.channels))
        # Store calls per round trip: how well a crowd's calls share pipelines (see batching.py).
        batches = metrics.gauge("vonix_ws_store_batches", "Round trips made by each batcher so far.", ("batcher",))
        items = metrics.gauge("vonix_ws_store_batch_items", "Calls carried by each batcher's round trips so far.",
                              ("batcher",))
        for name, batcher in (("registrations", node._registrations), ("unregistrations", node._unregistrations),
                              ("recoveries", node._recoveries), ("presence", node.presence_feed._changes)):
            batches.labels(batcher=name).set_function(lambda b=batcher: b.batches)
            items.labels(batcher=name).set_function(lambda b=batcher: b.items)

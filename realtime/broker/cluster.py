"""Redis Cluster broker: sharded pub/sub, one subscriber connection per master in use.

Why sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7): classic pub/sub on a cluster sends every
message to every node, so the bus carries the whole site's traffic however many shards there are.
A shard channel lives in a hash slot like a key: a message travels only within the shard that owns
it. Each channel's wire name is `prefix + "{" + channel + "}"` (`shard_topic`), the slot of the
channel's history keys, so the history scripts publish a stored message from the very node that
stored it, in the same script (realtime/history/redis.py).

Following the cluster: a replica opens one subscriber connection (the same `SubscriberProtocol` as
the single-Redis broker: messages handed to the node straight from the socket read) per master
that owns at least one channel it follows. When a slot moves (resharding) Redis ends the shard
subscriptions on the old owner with a `sunsubscribe` push; when a master dies its connection drops.
Either way the broker reports the gap (`on_state(False)`), re-reads the slot map, subscribes each
affected channel on its owner now, and reports `on_state(True)` once every channel is subscribed
again: the node then fills what its clients missed from history, so nothing is lost and, as
deliveries are de-duplicated by offset, nothing is doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from realtime.broker.base import MessageHandler, StateHandler, notify_state
from realtime.broker.subscriber import SubscriberError, SubscriberProtocol, hold, open_subscriber
from realtime.history.redis import shard_topic
from realtime.logs import get_logger

log = get_logger("vonix.broker")

Address = tuple[str, int]


def _drop(channel: str, message: bytes) -> None:
    return None


@dataclass(eq=False)
class _Shard:
    """The subscriber connection to one master and the channels this replica follows there."""

    address: Address
    channels: set[str] = field(default_factory=set)  # followed here: SSUBSCRIBE sent
    confirmed: set[str] = field(default_factory=set)  # ... and confirmed by this master
    connection: SubscriberProtocol | None = None
    up: bool = False
    task: asyncio.Task[None] | None = None


class ClusterBroker:
    def __init__(
        self,
        publisher: RedisCluster,
        subscriber: aioredis.Redis,
        *,
        prefix: str = "vonix:",
        metrics: Any = None,
        ping_every: float = 15.0,
        ping_within: float = 5.0,
        confirm_within: float = 2.0,
    ) -> None:
        self.publisher = publisher
        self.subscriber = subscriber  # credentials and TLS for every shard connection
        self.prefix = prefix
        self.ping_every = ping_every
        self.ping_within = ping_within
        self.confirm_within = confirm_within
        self.on_message: MessageHandler = _drop
        self.on_state: StateHandler | None = None
        self._channels: set[str] = set()
        self._names: dict[bytes, str] = {}  # wire name -> channel
        self._placed: dict[str, Address] = {}  # channel -> the master it is subscribed on
        self._shards: dict[Address, _Shard] = {}
        self._confirmations: dict[bytes, list[asyncio.Future[None]]] = {}
        self._connected = False
        self._gap = False  # a subscription broke since the last on_state(True)
        self._closing = False
        self._relocating: asyncio.Task[None] | None = None
        self._relocate_again = False
        self._reconnects = metrics.counter(
            "vonix_broker_reconnects_total", "Times the broker re-established its Redis subscription."
        ) if metrics is not None else None
        self._moves = metrics.counter(
            "vonix_broker_slot_moves_total",
            "Channels the cluster broker subscribed again on another master (resharding, failover).",
        ) if metrics is not None else None

    @property
    def connected(self) -> bool:
        return self._connected

    # --- the Broker interface -------------------------------------------------------------------
    async def start(self) -> None:
        await self.publisher.initialize()  # the slot map, before the first subscribe reads it
        self._connected = True

    async def close(self) -> None:
        self._closing = True
        tasks = [shard.task for shard in self._shards.values() if shard.task is not None]
        if self._relocating is not None:
            tasks.append(self._relocating)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=2.0)
        for shard in self._shards.values():
            if shard.connection is not None:
                shard.connection.close()

    async def publish(self, channel: str, message: bytes) -> None:
        """Raises RedisError/OSError when the owning shard is unreachable; callers degrade."""
        await self.publisher.spublish(shard_topic(self.prefix, channel), message)

    async def subscribe(self, channel: str) -> None:
        """Returns once the owning master confirmed (or after `confirm_within`, the channel staying
        wanted: its shard connection subscribes it when it comes up)."""
        self._channels.add(channel)
        wire = self._wire(channel)
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(wire, []).append(confirmed)
        try:
            self._place(channel, self._owner(wire))
        except SubscriberError:  # its slot has no master this instant: placed once the map settles
            await self._relocate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(confirmed), timeout=self.confirm_within)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        wire = self._wire(channel)
        self._names.pop(wire, None)
        address = self._placed.pop(channel, None)
        shard = self._shards.get(address) if address is not None else None
        if shard is not None:
            shard.channels.discard(channel)
            shard.confirmed.discard(channel)
            if shard.connection is not None:
                shard.connection.send("SUNSUBSCRIBE", wire)

    # --- placement ------------------------------------------------------------------------------
    def _wire(self, channel: str) -> bytes:
        wire = shard_topic(self.prefix, channel).encode()
        self._names[wire] = channel
        return wire

    def _owner(self, wire: bytes) -> Address:
        node = self.publisher.get_node_from_key(wire.decode())
        if node is None:  # a slot without a master (a failover under way)
            raise SubscriberError(f"no master owns {wire.decode()!r} now")
        return (node.host, int(node.port))

    def _place(self, channel: str, address: Address) -> None:
        """Follow `channel` on the master at `address` (leaving the one it was on, if another)."""
        before = self._placed.get(channel)
        wire = self._wire(channel)
        if before is not None and before != address:
            old = self._shards.get(before)
            if old is not None:
                old.channels.discard(channel)
                old.confirmed.discard(channel)
                if old.connection is not None and old.up:
                    old.connection.send("SUNSUBSCRIBE", wire)
            if self._moves is not None:
                self._moves.inc()
        self._placed[channel] = address
        shard = self._shards.get(address)
        if shard is None:
            shard = self._shards[address] = _Shard(address)
            shard.task = asyncio.get_running_loop().create_task(self._run(shard), name=f"cluster-broker-{address[1]}")
        if channel not in shard.channels:
            shard.channels.add(channel)
            if shard.connection is not None and shard.up:
                shard.connection.send("SSUBSCRIBE", wire)

    async def _relocate(self) -> None:
        """Re-read the slot map and follow every channel on its owner now (coalesced: one refresh
        at a time, and one more if something changed while it ran)."""
        if self._relocating is not None and not self._relocating.done():
            self._relocate_again = True
            return
        self._relocating = asyncio.get_running_loop().create_task(self._relocate_loop())

    async def _relocate_loop(self) -> None:
        delay = 0.05
        while not self._closing:
            self._relocate_again = False
            try:
                await self.publisher.nodes_manager.initialize()
            except Exception as exc:  # no node answers yet (a failover under way): try again
                log.warning("broker_slot_map_failed", error=f"{exc.__class__.__name__}: {exc}")
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
                continue
            try:
                for channel in list(self._channels):
                    self._place(channel, self._owner(self._wire(channel)))
            except SubscriberError as exc:  # a slot still without a master: read the map again
                log.info("broker_slot_map_incomplete", error=str(exc))
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
                continue
            for address, shard in list(self._shards.items()):
                if not shard.channels and shard.task is not None:  # nothing followed there any more
                    shard.task.cancel()
                    if shard.connection is not None:
                        shard.connection.close()
                    del self._shards[address]
            await self._settle()
            if not self._relocate_again:
                return

    # --- state ------------------------------------------------------------------------------------
    async def _broke(self) -> None:
        """A subscription may have missed messages: tell the node (once per outage)."""
        self._gap = True
        await self._set_state(False)

    async def _settle(self) -> None:
        """Every followed channel subscribed again, as its master confirmed: the node may now fill
        the gap from history. (Sent is not enough: while a slot moves, an SSUBSCRIBE can reach a
        master that answers MOVED, and a gap filled before the channel is really subscribed again
        would lose whatever is published after the fill.)"""
        if self._gap and all(self._subscribed(channel) for channel in self._channels):
            self._gap = False
            await self._set_state(True)

    def _subscribed(self, channel: str) -> bool:
        address = self._placed.get(channel)
        shard = self._shards.get(address) if address is not None else None
        return shard is not None and shard.up and channel in shard.confirmed

    async def _set_state(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        await notify_state(self.on_state, connected)

    # --- callbacks from the shard connections (synchronous, from the socket read) ------------------
    def _deliver(self, wire: bytes, payload: bytes) -> None:
        channel = self._names.get(wire)
        if channel is not None:
            self.on_message(channel, payload)

    def _confirm(self, shard: _Shard, wire: bytes) -> None:
        channel = self._names.get(wire)
        if channel is not None and channel in shard.channels:
            shard.confirmed.add(channel)
            if self._gap:
                self._spawn(self._settle())
        for waiter in self._confirmations.pop(wire, []):
            if not waiter.done():
                waiter.set_result(None)

    def _dropped(self, shard: _Shard, wire: bytes) -> None:
        """Redis ended a shard subscription we still want: its slot moved to another master."""
        channel = self._names.get(wire)
        if channel is None or channel not in self._channels or channel not in shard.channels:
            return  # the answer to our own SUNSUBSCRIBE
        log.info("broker_slot_moved", channel=channel)
        self._unplace(shard, [channel])
        self._spawn(self._moved(0.0))

    def _refused(self, shard: _Shard, error: Any) -> None:
        """An SSUBSCRIBE refused (MOVED: the slot map was stale, or the slot is between two masters
        while it moves; CLUSTERDOWN: a failover). The reply does not say which SSUBSCRIBE it answers:
        every channel still unconfirmed on this master is subscribed again once the map is read
        again, a moment later (two masters can send each other's MOVED while a slot moves)."""
        log.info("broker_subscribe_refused", error=str(error))
        self._unplace(shard, [channel for channel in shard.channels if channel not in shard.confirmed])
        self._spawn(self._moved(0.05))

    def _unplace(self, shard: _Shard, channels: list[str]) -> None:
        for channel in channels:
            shard.channels.discard(channel)
            shard.confirmed.discard(channel)
            if self._placed.get(channel) == shard.address:
                del self._placed[channel]

    async def _moved(self, after: float) -> None:
        await self._broke()
        if after:
            await asyncio.sleep(after * (0.5 + random.random()))
        await self._relocate()

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # --- one shard's connection -----------------------------------------------------------------
    async def _connect(self, shard: _Shard) -> SubscriberProtocol:
        connection = await open_subscriber(
            self.subscriber, self._deliver, lambda wire: self._confirm(shard, wire), address=shard.address,
            dropped=lambda wire: self._dropped(shard, wire), refused=lambda error: self._refused(shard, error))
        shard.connection = connection
        wires = [self._wire(channel) for channel in shard.channels]
        waiters = []
        for wire in wires:
            waiter = asyncio.get_running_loop().create_future()
            self._confirmations.setdefault(wire, []).append(waiter)
            waiters.append(waiter)
            connection.send("SSUBSCRIBE", wire)  # one per channel: an SSUBSCRIBE takes one slot
        shard.up = True  # from here `_place` sends its SSUBSCRIBEs itself
        if waiters:
            confirmed = asyncio.gather(*waiters)
            confirmed.add_done_callback(lambda f: f.cancelled() or f.exception())
            watched: list[asyncio.Future[Any]] = [connection.lost, confirmed]
            done, _ = await asyncio.wait(watched, timeout=5.0,
                                         return_when=asyncio.FIRST_COMPLETED)
            if confirmed not in done:
                raise SubscriberError("the shard subscriptions were not confirmed")
        return connection

    async def _run(self, shard: _Shard) -> None:
        delay = 0.05
        first = True
        while not self._closing and self._shards.get(shard.address) is shard:
            try:
                connection = await self._connect(shard)
                if not first and self._reconnects is not None:
                    self._reconnects.inc()
                    log.info("broker_reconnected", shard=f"{shard.address[0]}:{shard.address[1]}",
                             channels=len(shard.channels))
                first = False
                delay = 0.05
                await self._settle()
                await hold(connection, every=self.ping_every, answer_within=self.ping_within)
            except asyncio.CancelledError:
                raise
            except (SubscriberError, OSError) as exc:
                log.warning("broker_shard_disconnected", shard=f"{shard.address[0]}:{shard.address[1]}",
                            error=f"{exc.__class__.__name__}: {exc}", retry_in=round(delay, 2))
            except Exception:
                log.exception("broker_shard_failed")
            finally:
                shard.up = False
                shard.confirmed.clear()
                for channel in shard.channels:  # waiters stop waiting; the channel stays wanted
                    for waiter in self._confirmations.pop(self._wire(channel), []):
                        if not waiter.done():
                            waiter.set_result(None)
                if shard.connection is not None:
                    shard.connection.close()
                    shard.connection = None
            if self._closing:
                return
            if shard.channels:
                await self._broke()
            # The master may be gone for good (a replica promoted elsewhere): follow the new map.
            await self._relocate()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

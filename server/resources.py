"""Everything the app holds for its lifetime, built unconnected by the factory and opened by the
lifespan. Handlers reach it through `resources_of(request)`; there are no module-level clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Gauge
from starlette.requests import HTTPConnection

from realtime import errors
from realtime.broker import Broker, create_broker
from realtime.errors import ReplyError
from realtime.history import create_history
from realtime.node import Node, NodeSettings
from realtime.nonces import create_nonces
from realtime.presence import create_presence
from server.auth.service import AuthService
from server.cache import Cache, create_cache
from server.db.database import Database
from server.guest_limit import GuestLimit
from server.infra.breaker import BreakerPolicy, Breakers
from server.infra.locks import Lock, make_lock
from server.infra.redis import RedisClients
from server.minecraft import linking as mc_linking
from server.minecraft import status as mc_status
from server.notifications.service import Notifications
from server.observability.alerts import Alerter
from server.observability.errors import ErrorTracker
from server.observability.logging import get_logger
from server.observability.metrics import Metrics
from server.observability.timing import Timings
from server.observability.tracing import Tracing
from server.ops.health import HealthChecks
from server.ops.lifecycle import Lifecycle
from server.ops.maintenance import Maintenance
from server.ops.scheduler import MaintenanceScheduler
from server.ops.stats import ClusterStats
from server.push.sender import PushSender
from server.ratelimit import RateLimiter, Rule, create_limiter
from server.realtime_hooks import ServerHooks
from server.services import feed, forum, groups
from server.services.channels import ChannelMeta
from server.services.live import LiveStreams
from server.services.people import People
from server.services.read_markers import ReadMarkers
from server.services.relations import Relations
from server.services.sanctions import Sanctions
from server.services.xp import Xp
from server.settings import Settings

log = get_logger("vonix.resources")


@dataclass
class Resources:
    settings: Settings
    metrics: Metrics
    db: Database
    redis: RedisClients | None
    lifecycle: Lifecycle
    health: HealthChecks
    background: list[asyncio.Task[None]] = field(default_factory=list)
    locks: Lock | None = None
    maintenance: MaintenanceScheduler | None = None
    broker: Broker | None = None
    auth: AuthService | None = None
    hooks: ServerHooks | None = None
    breakers: Breakers | None = None
    errors: ErrorTracker | None = None
    alerter: Alerter | None = None
    stats: ClusterStats | None = None
    tracing: Tracing | None = None
    timings: Timings | None = None
    node: Node | None = None
    cache: Cache | None = None
    limiter: RateLimiter | None = None
    push: PushSender | None = None
    notifications: Notifications | None = None
    relations: Relations | None = None
    people: People | None = None
    live: LiveStreams | None = None  # `live:` community streams: who reads them, and publishing
    forum: Any = None  # server/services/forum.py
    feed: Any = None  # server/services/feed.py
    groups: Any = None  # server/services/groups.py: groups and events
    mc_status: Any = None  # server/minecraft/status.py: game servers, the status poller
    mc_link: Any = None  # server/minecraft/linking.py: plugin API keys, link codes
    sanctions: Sanctions | None = None
    xp: Xp | None = None
    guests: GuestLimit | None = None  # server/guest_limit.py: guest websockets per address
    _spawned: set[asyncio.Task[None]] = field(default_factory=set)
    # Set by `build` (not a constructor argument).
    _component_up: Gauge = field(init=False, repr=False, compare=False)

    @classmethod
    def build(cls, settings: Settings) -> Resources:
        metrics = Metrics()
        db = Database(
            settings.database,
            metrics,
            pool_min=settings.db_pool_min,
            pool_max=settings.db_pool_max,
            timeout=settings.db_timeout,
            slow_query_seconds=settings.slow_query_ms / 1000,
        )
        redis = None
        if settings.redis_url:
            redis = RedisClients(
                settings.redis_url,
                metrics,
                timeout=settings.redis_timeout,
                health_interval=settings.redis_health_interval,
                pool_size=settings.redis_pool_size,
                cluster=settings.redis_cluster,
            )
        lifecycle = Lifecycle()
        health = HealthChecks(db, redis, lifecycle)
        locks = make_lock(redis)
        maintenance = MaintenanceScheduler.from_settings(Maintenance(db, settings, metrics), locks, settings)
        resources = cls(settings, metrics, db, redis, lifecycle, health, locks=locks, maintenance=maintenance)
        resources.broker = create_broker(redis, metrics=metrics)
        resources.guests = GuestLimit(settings.ws_max_guests_per_ip, settings.trusted_proxies, metrics)
        resources.breakers = Breakers(
            BreakerPolicy(settings.breaker_failure_threshold, settings.breaker_reset_timeout,
                          settings.breaker_call_timeout),
            metrics=metrics, redis=redis.commands if redis is not None else None)
        resources.errors = ErrorTracker(db, metrics)
        resources.alerter = Alerter(settings, resources.breakers, metrics,
                                    redis.commands if redis is not None else None)
        resources.stats = ClusterStats(resources)
        resources.tracing = Tracing(settings)
        resources.timings = Timings(metrics)
        resources.auth = AuthService(settings, db, publish=resources.publish_quietly, breakers=resources.breakers)
        resources.hooks = ServerHooks(db, resources.auth, timings=resources.timings)
        resources.cache = create_cache(settings, redis, metrics)
        resources.limiter = create_limiter(settings, redis, metrics)
        resources.auth.attach_cache(resources.cache)
        resources.hooks.attach_cache(resources.cache)
        resources.node = build_node(settings, redis, resources.broker, resources.hooks, metrics)
        resources.push = PushSender(settings, db, resources.breakers, metrics)
        resources.notifications = Notifications(db, resources.node, resources.push, settings.push_when,
                                                resources.spawn)
        resources.hooks.stored_observers.append(resources.notifications.message_stored)
        resources.hooks.read_markers = ReadMarkers(db, resources.hooks.channels, resources.notifications)
        resources.relations = Relations(db, resources.cache)
        resources.people = People(db, resources.relations, resources.node, settings.minecraft_avatar_url,
                                  resources.spawn, metrics, daily_login=settings.xp_daily_login)
        resources.relations.publish = resources.people.publish
        resources.hooks.relations = resources.relations
        resources.hooks.people = resources.people
        resources.notifications.relations = resources.relations
        resources.hooks.forget_history = resources.forget_history
        resources.xp = Xp(db, redis.commands if redis is not None else None)
        resources.xp.publish = resources.people.publish
        resources.xp.notify = resources.notifications.notify_about
        resources.people.xp = resources.xp
        resources.sanctions = Sanctions(db, resources.hooks.channels, resources.cache)
        resources.sanctions.node = resources.node
        resources.sanctions.publish = resources.people.publish
        resources.sanctions.revoke_sessions = resources.sign_out_everywhere
        resources.hooks.sanctions = resources.sanctions
        resources.hooks.slow_mode = resources.slow_mode
        resources.auth.unsuspend_if_clear = resources.sanctions.unsuspend_if_clear
        resources.live = LiveStreams(resources.node)
        resources.hooks.live = resources.live
        forum.attach(resources, settings)
        feed.attach(resources, settings)
        groups.attach(resources, settings)
        mc_status.attach(resources, settings)
        mc_linking.attach(resources, settings)
        if resources.tracing.enabled:
            db.tracer = resources.tracing.tracer
            resources.node.tracer = resources.tracing.tracer
            resources.node.commits.traced = True
        resources._component_up = metrics.gauge(
            "vonix_component_up", "1 when a component passed its last readiness check.", ("component",)
        )
        return resources

    async def forget_history(self, channel: str) -> None:
        """Cached history pages of `channel` are stale (an edit, delete or reaction changed one)."""
        if self.cache is not None:
            try:
                await self.cache.invalidate(tags=[f"history:{channel}"])
            except Exception as exc:  # stored either way; the pages expire with their TTL
                log.warning("history_invalidation_failed", channel=channel, error=exc.__class__.__name__)

    async def sign_out_everywhere(self, user_id: int, actor_id: int | None) -> None:
        """A site ban: every session of the user is revoked (refresh tokens die with them)."""
        assert self.auth is not None
        sessions = await self.auth.sessions.live_ids_for_user(user_id)
        await self.auth.revoke_sessions(sessions, "banned", actor_id=actor_id, user_id=user_id)
        await self.auth.user_changed(user_id)

    async def slow_mode(self, room: ChannelMeta, user_id: int) -> None:
        """One message per `room.slow_mode` seconds per member, counted across replicas."""
        assert self.limiter is not None
        decision = await self.limiter.hit(Rule("slow_mode", 1, float(room.slow_mode), burst=1), f"{room.id}:{user_id}")
        if not decision.allowed:
            raise ReplyError(errors.RATE_LIMITED, f"slow mode: one message every {room.slow_mode} s in this room",
                             temporary=True, retry_after=max(0.001, decision.retry_after))

    async def publish_quietly(self, channel: str, message: bytes) -> None:
        """Publish an internal event; a broker outage is logged, never raised into a request."""
        if self.broker is None:
            return
        try:
            await self.broker.publish(channel, message)
        except Exception as exc:
            log.warning("event_publish_failed", channel=channel, error=exc.__class__.__name__)

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> None:
        """Fire-and-forget work that must not delay the response (and is awaited at shutdown)."""
        task = asyncio.create_task(coroutine, name=name)
        self._spawned.add(task)
        task.add_done_callback(self._spawn_done)

    def _spawn_done(self, task: asyncio.Task[None]) -> None:
        self._spawned.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background_task_failed", task=task.get_name(),
                      error=task.exception().__class__.__name__)

    async def wait_spawned(self, limit_seconds: float = 5.0) -> None:
        if self._spawned:
            await asyncio.wait(set(self._spawned), timeout=limit_seconds)

    def start_background(self, coroutine: Coroutine[Any, Any, Any], name: str) -> None:
        self.background.append(asyncio.create_task(coroutine, name=name))

    async def stop_background(self) -> None:
        tasks, self.background = self.background, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def monitor_health(self, interval: float = 10.0) -> None:
        """Keep liveness' view and the component gauges fresh between readiness probes."""
        while True:
            try:
                await self.health.readiness()
            except Exception:
                log.exception("health_monitor_failed")
            self.refresh_gauges()
            await asyncio.sleep(interval)

    def refresh_gauges(self) -> None:
        for name, status in self.health.last.items():
            self._component_up.labels(name).set(1 if status.status in ("ok", "disabled") else 0)
        self.db.pool_state()


def build_node(settings: Settings, redis: RedisClients | None, broker: Broker, hooks: ServerHooks,
               metrics: Metrics) -> Node:
    """The realtime node with memory or Redis backends, chosen by whether Redis is configured."""
    return Node(
        hooks=hooks,
        broker=broker,
        history=create_history(redis, broker, size=settings.ws_history_size, ttl=settings.ws_history_ttl),
        presence=create_presence(redis.commands if redis is not None else None, ttl=settings.presence_ttl),
        nonces=create_nonces(redis),
        settings=NodeSettings(
            max_subscriptions=settings.ws_max_subscriptions,
            max_connections_per_user=settings.ws_max_connections_per_user,
            max_queue_bytes=settings.ws_max_queue_bytes,
            coalesce_seconds=settings.ws_coalesce_ms / 1000,
            commit_window=settings.ws_commit_window_ms / 1000,
            publish_rate=settings.ws_publish_rate,
            publish_burst=settings.ws_publish_burst,
            auth_timeout=settings.ws_auth_timeout,
            max_recovery=settings.ws_max_recovery,
            recent_frames=settings.ws_recent_frames,
            presence_interval=settings.ws_presence_interval_ms / 1000,
            presence_heartbeat=settings.presence_heartbeat,
            presence_sweep=settings.presence_sweep,
        ),
        metrics=metrics,
    )


def resources_of(connection: HTTPConnection) -> Resources:
    return connection.app.state.vonix  # type: ignore[no-any-return]

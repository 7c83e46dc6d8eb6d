"""Presence in Redis, shared by every replica; all multi-key updates are Lua scripts.

Per channel, four keys share the `{channel}` hash tag, so each script touches one hash slot
(Redis Cluster runs it on the node owning the channel, beside the channel's history):
- `presence:{ch}:exp`   ZSET conn_id -> expiry (the replica's clock + ttl)
- `presence:{ch}:conn`  HASH conn_id -> user_id
- `presence:{ch}:count` HASH user_id -> entries not yet removed; 0 -> 1 is a join, 1 -> 0 a leave
- `presence:{ch}:user`  HASH user_id -> user JSON (what `users()` returns, one read)

`presence:channels` is a ZSET of channels with presence, scored by when a sweep should next look
(never later than the earliest expiry, up to clock skew), so a sweep visits only channels that
may hold expired entries, including channels no local client subscribes to. It lives in another
slot, so it is updated beside the scripts, never inside them; an emptied channel is removed and
then re-checked, so a concurrent join can never leave a populated channel out of it.

The connection cap is one ZSET per user (`conns:{user_id}`) of conn_id -> expiry, trimmed,
counted and added in one script; the key's own TTL collects users who left no replica alive.

Scripts are loaded once (`register_script`); pipelines call EVALSHA directly (redis-py would
otherwise ask SCRIPT EXISTS before every pipeline) and reload once on NOSCRIPT after a restart.

Every script declares all its keys, and pipelines are never transactions, so the same code runs on
Redis Cluster (a `RedisCluster` client splits each pipeline by node); the prefix may not contain
braces, which would replace the hash tags.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ReadOnlyError, RedisClusterUnreachableError, SlotNotCoveredError
from redis.exceptions import TimeoutError as RedisTimeoutError

from realtime.logs import get_logger
from realtime.presence.base import DEFAULT_TTL, Clock, PresenceChange, PresenceUnavailable, PresenceUser

log = get_logger("vonix.presence")

# KEYS exp, conn, count, user; ARGV conn_id, user_id, user_json, expiry -> 1 on the user's first entry
JOIN = """
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
if redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if redis.call('HINCRBY', KEYS[3], ARGV[2], 1) == 1 then
  return 1
end
return 0
"""

# Shared by LEAVE and SWEEP: drop one entry, return 1 when it was the user's last.
_REMOVE = """
local function remove(conn)
  local uid = redis.call('HGET', KEYS[2], conn)
  redis.call('ZREM', KEYS[1], conn)
  redis.call('HDEL', KEYS[2], conn)
  if not uid then return nil end
  if redis.call('HINCRBY', KEYS[3], uid, -1) > 0 then return nil end
  redis.call('HDEL', KEYS[3], uid)
  local user = redis.call('HGET', KEYS[4], uid)
  redis.call('HDEL', KEYS[4], uid)
  return user or false
end
"""

# KEYS as JOIN; ARGV conn_id -> 1 when it was the user's last entry
LEAVE = _REMOVE + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if remove(ARGV[1]) == nil then return 0 end
return 1
"""

# KEYS as JOIN; ARGV expiry, then per change: 'j' conn_id user_id user_json | 'l' conn_id '' ''
# -> one 0/1 per change, as JOIN and LEAVE would answer them one by one, in order. A batch's changes
# to one channel are one call: a drain leaves, and a reconnect wave joins, ~3 rooms per connection.
APPLY = _REMOVE + """
local out = {}
for i = 2, #ARGV, 4 do
  local conn = ARGV[i + 1]
  local edge = 0
  if ARGV[i] == 'j' then
    local uid = ARGV[i + 2]
    redis.call('HSET', KEYS[4], uid, ARGV[i + 3])
    if redis.call('ZADD', KEYS[1], ARGV[1], conn) == 1 then
      redis.call('HSET', KEYS[2], conn, uid)
      if redis.call('HINCRBY', KEYS[3], uid, 1) == 1 then edge = 1 end
    end
  elseif redis.call('ZSCORE', KEYS[1], conn) and remove(conn) ~= nil then
    edge = 1
  end
  out[#out + 1] = edge
end
return out
"""

# KEYS as JOIN; ARGV now, batch -> {more, earliest remaining expiry or '', user JSON of each leave...}
SWEEP = _REMOVE + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {#expired == tonumber(ARGV[2]) and 1 or 0, ''}
for _, conn in ipairs(expired) do
  local user = remove(conn)
  if user then out[#out + 1] = user end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then out[2] = first[2] end
return out
"""

# KEYS exp; ARGV expiry, conn_id... -> the conn_ids that are gone
HEARTBEAT = """
local lost = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

# KEYS conns:{user}; ARGV conn_id, limit, now, expiry, key ttl ms -> 1 recorded, 0 refused
REGISTER = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

# Failures that mean "Redis is not reachable right now", not a bug in a script (the last two: a
# cluster with no reachable node, or a slot whose master is gone and not yet replaced).
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError,
                RedisClusterUnreachableError, SlotNotCoveredError)


def _by_user(entries: Sequence[tuple[int, str]]) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for user_id, conn_id in entries:
        grouped.setdefault(user_id, []).append(conn_id)
    return grouped


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisPresence:
    def __init__(
        self,
        redis: aioredis.Redis | RedisCluster,
        *,
        ttl: float = DEFAULT_TTL,
        prefix: str = "vonix:",
        clock: Clock | None = None,
        batch: int = 500,
    ) -> None:
        self.redis = redis
        self.ttl = ttl
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"Redis key prefix {prefix!r} must not contain '{{' or '}}' (Redis Cluster hash tags)")
        self.prefix = prefix
        self.clock: Clock = clock or time.time
        self.batch = batch
        self._index = f"{prefix}presence:channels"
        self._join = redis.register_script(JOIN)
        self._leave = redis.register_script(LEAVE)
        self._apply = redis.register_script(APPLY)
        self._sweep = redis.register_script(SWEEP)
        self._heartbeat = redis.register_script(HEARTBEAT)
        self._register = redis.register_script(REGISTER)
        self._key_ttl_ms = math.ceil(ttl * 1000) + 1000  # a second of slack for clock skew

    def _keys(self, channel: str) -> list[str]:
        base = f"{self.prefix}presence:{{{channel}}}:"
        return [base + "exp", base + "conn", base + "count", base + "user"]

    def _conns_key(self, user_id: int) -> str:
        return f"{self.prefix}conns:{{{user_id}}}"

    async def join(self, channel: str, conn_id: str, user: PresenceUser) -> bool:
        expiry = self.clock() + self.ttl
        payload = orjson.dumps(user.as_dict())

        def build(pipe: Any) -> None:
            pipe.evalsha(self._join.sha, 4, *self._keys(channel), conn_id, user.user_id, payload, expiry)
            pipe.zadd(self._index, {channel: expiry}, lt=True)

        with _guard():
            first, _ = await self._pipeline(build)
        return bool(first)

    async def apply(self, changes: Sequence[PresenceChange]) -> list[bool]:
        """One script call per channel (its changes in their order) and one index update per
        channel with a join, all in one pipeline."""
        expiry = self.clock() + self.ttl
        by_channel: dict[str, list[int]] = {}
        for index, change in enumerate(changes):
            by_channel.setdefault(change.channel, []).append(index)
        args: dict[str, list[Any]] = {}
        for channel, indexes in by_channel.items():
            argv: list[Any] = [expiry]
            for index in indexes:
                change = changes[index]
                if change.join:
                    argv += ("j", change.conn_id, change.user.user_id, orjson.dumps(change.user.as_dict()))
                else:
                    argv += ("l", change.conn_id, "", "")
            args[channel] = argv

        def build(pipe: Any) -> None:
            for channel, argv in args.items():
                pipe.evalsha(self._apply.sha, 4, *self._keys(channel), *argv)
            for channel, indexes in by_channel.items():  # after the entries (see _drop_empty)
                if any(changes[index].join for index in indexes):
                    pipe.zadd(self._index, {channel: expiry}, lt=True)

        with _guard():
            results = await self._pipeline(build)
        edges = [False] * len(changes)
        for indexes, answered in zip(by_channel.values(), results, strict=False):
            for index, edge in zip(indexes, answered, strict=True):
                edges[index] = bool(edge)
        return edges

    async def leave(self, channel: str, conn_id: str, user_id: int) -> bool:
        # The stored user id is the truth; `user_id` is only what the caller believes.
        with _guard():
            return bool(await self._leave(keys=self._keys(channel), args=[conn_id]))

    async def users(self, channel: str) -> list[PresenceUser]:
        with _guard():
            values = await self.redis.hvals(self._keys(channel)[3])
        users = [PresenceUser.from_dict(orjson.loads(value)) for value in values]
        return sorted(users, key=lambda user: user.user_id)

    async def heartbeat(self, entries: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        by_channel: dict[str, list[str]] = {}
        for channel, conn_id in entries:
            by_channel.setdefault(channel, []).append(conn_id)
        if not by_channel:
            return []
        expiry = self.clock() + self.ttl
        owners: list[str | None] = []  # the channel of each pipelined script call, None for index adds

        def build(pipe: Any) -> None:
            owners.clear()
            for channel, conns in by_channel.items():
                for start in range(0, len(conns), self.batch):
                    chunk = conns[start:start + self.batch]
                    pipe.evalsha(self._heartbeat.sha, 1, self._keys(channel)[0], expiry, *chunk)
                    owners.append(channel)
                # Self-healing: a live channel is always in the index (no-op when it already is).
                pipe.zadd(self._index, {channel: expiry}, lt=True)
                owners.append(None)

        with _guard():
            results = await self._pipeline(build)
        return [(channel, _text(conn)) for channel, lost in zip(owners, results, strict=True)
                if channel is not None for conn in lost]

    async def sweep(self) -> list[tuple[str, PresenceUser]]:
        now = self.clock()
        left: list[tuple[str, PresenceUser]] = []
        seen: set[str] = set()
        with _guard():
            while True:
                # Without `withscores` the reply is the members alone.
                page = cast(list[bytes | str], await self.redis.zrangebyscore(
                    self._index, "-inf", now, start=0, num=self.batch))
                fresh = [c for c in map(_text, page) if c not in seen]
                if not fresh:
                    break
                seen.update(fresh)
                await self._sweep_channels(fresh, now, left)
                if len(page) < self.batch:
                    break
        if left:
            log.info("presence_expired", leaves=len(left), channels=len({c for c, _ in left}))
        return left

    async def _sweep_channels(self, channels: list[str], now: float,
                              left: list[tuple[str, PresenceUser]]) -> None:
        pending = channels
        while pending:
            batch = pending

            def build(pipe: Any, batch: list[str] = batch) -> None:
                for channel in batch:
                    pipe.evalsha(self._sweep.sha, 4, *self._keys(channel), now, self.batch)

            results = await self._pipeline(build)
            pending, emptied, rescore = [], [], {}
            for channel, (more, earliest, *users) in zip(batch, results, strict=True):
                left.extend((channel, PresenceUser.from_dict(orjson.loads(u))) for u in users)
                if more:
                    pending.append(channel)
                elif earliest:
                    rescore[channel] = float(earliest)
                else:
                    emptied.append(channel)
            if rescore:
                await self.redis.zadd(self._index, rescore)
            if emptied:
                await self._drop_empty(emptied)

    async def _drop_empty(self, channels: list[str]) -> None:
        """Remove emptied channels from the index, then put back any a join refilled meanwhile.

        A join adds its entry before it adds the channel to the index; reading the channel after
        removing it from the index therefore either sees that entry or precedes the join's add.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self._index, *channels)
            for channel in channels:
                pipe.zrange(self._keys(channel)[0], 0, 0, withscores=True)
            _, *firsts = await pipe.execute()
        refilled = {channel: first[0][1] for channel, first in zip(channels, firsts, strict=True) if first}
        if refilled:
            await self.redis.zadd(self._index, refilled, lt=True)

    async def register_connection(self, user_id: int, conn_id: str, limit: int) -> bool:
        now = self.clock()
        with _guard():
            added = await self._register(keys=[self._conns_key(user_id)],
                                         args=[conn_id, limit, now, now + self.ttl, self._key_ttl_ms])
        return bool(added)

    async def register_connections(self, entries: Sequence[tuple[int, str]], limit: int) -> list[bool]:
        now = self.clock()

        def build(pipe: Any) -> None:
            for user_id, conn_id in entries:
                pipe.evalsha(self._register.sha, 1, self._conns_key(user_id), conn_id, limit, now,
                             now + self.ttl, self._key_ttl_ms)

        with _guard():
            return [bool(added) for added in await self._pipeline(build)]

    async def unregister_connection(self, user_id: int, conn_id: str) -> None:
        with _guard():
            await self.redis.zrem(self._conns_key(user_id), conn_id)

    async def unregister_connections(self, entries: Sequence[tuple[int, str]]) -> None:
        with _guard():
            async with self.redis.pipeline(transaction=False) as pipe:
                for user_id, conn_ids in _by_user(entries).items():  # one ZREM per user, not per connection
                    pipe.zrem(self._conns_key(user_id), *conn_ids)
                await pipe.execute()

    async def connection_count(self, user_id: int) -> int:
        with _guard():
            return int(await self.redis.zcount(self._conns_key(user_id), self.clock(), "+inf"))

    async def connected_users(self, user_ids: Sequence[int]) -> set[int]:
        if not user_ids:
            return set()
        now = self.clock()
        with _guard():
            async with self.redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.zcount(self._conns_key(user_id), now, "+inf")
                counts = await pipe.execute()
        return {uid for uid, count in zip(user_ids, counts, strict=True) if int(count)}

    async def heartbeat_connections(self, entries: Sequence[tuple[int, str]]) -> None:
        # Re-adds a record that expired meanwhile: the connection is real, so it must count.
        if not entries:
            return
        expiry = self.clock() + self.ttl
        with _guard():
            async with self.redis.pipeline(transaction=False) as pipe:
                # Two commands per user, whatever their number of connections: a replica holding
                # 10,000 connections of 100 members sends 200 commands a heartbeat, not 20,000.
                for user_id, conn_ids in _by_user(entries).items():
                    key = self._conns_key(user_id)
                    pipe.zadd(key, dict.fromkeys(conn_ids, expiry))
                    pipe.pexpire(key, self._key_ttl_ms)
                await pipe.execute()

    async def _pipeline(self, build: Callable[[Any], None]) -> list[Any]:
        """Run EVALSHA calls in one round trip; reload the scripts once if Redis forgot them."""
        for attempt in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                build(pipe)
                try:
                    return list(await pipe.execute())
                except NoScriptError:
                    if attempt:
                        raise
            for script in (self._join, self._leave, self._apply, self._sweep, self._heartbeat, self._register):
                script.sha = await self.redis.script_load(script.script)
        raise AssertionError("unreachable")


@contextlib.contextmanager
def _guard() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise PresenceUnavailable(f"presence store unreachable: {exc.__class__.__name__}: {exc}") from exc

"""Scaled-mode history: one Lua script assigns or orders the offset, appends and publishes.

Keys per channel share the `{channel}` hash tag, so each channel's keys live in one Redis Cluster
slot:
- `{ch}:offset` last offset, `{ch}:epoch` epoch (re-created when Redis lost the history, so
  clients learn their gap cannot be filled from the hot window),
- `{ch}:window` ZSET offset -> frame, trimmed to the newest `size`,
- `{ch}:pending` ZSET of persisted frames that arrived ahead of a missing offset (two replicas
  committed N and N+1 but N+1 reached Redis first); they are published as soon as N arrives, or
  after `stale_ms` if N never comes (its publisher died; the database still has it).
All keys expire after `ttl` seconds without traffic.

On a single Redis the scripts PUBLISH on `prefix + channel`, and the batch script for committed
messages derives each channel's key names itself (the Python side would otherwise encode four key
names per message). On Redis Cluster (a `RedisCluster` client) every key a script touches is passed
in KEYS, a committed batch is split into one script call per slot (one pipeline, so one round
trip per node), and the scripts SPUBLISH on the shard channel `prefix + "{" + channel + "}"`
(`shard_topic`), which hashes to the slot of the channel's keys: the message is published by the
node that stored it, to the shard the sharded broker listens on.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from realtime.history.base import FrameParts, Published, envelope

# KEYS: offset, epoch, window, pending ; ARGV: head, middle, tail, size, ttl, topic, new_epoch, ts
_ASSIGN = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[7]
  redis.call('SET', KEYS[2], epoch)
  redis.call('DEL', KEYS[1], KEYS[3])
end
local offset = redis.call('INCR', KEYS[1])
local frame = ARGV[1] .. offset .. ARGV[2] .. epoch .. ARGV[3]
redis.call('ZADD', KEYS[3], offset, frame)
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[4]) + 1))
local ttl = tonumber(ARGV[5])
redis.call('EXPIRE', KEYS[1], ttl); redis.call('EXPIRE', KEYS[2], ttl); redis.call('EXPIRE', KEYS[3], ttl)
redis.call('%(publish)s', ARGV[6], offset .. ' ' .. ARGV[8] .. '\\n' .. frame)
return {offset, epoch}
"""

# ARGV: prefix, size, ttl, now_ms, stale_ms, ts, then per message: channel (or topic), offset,
# epoch, frame. `order` places one committed message in its channel (or, without a message, only
# releases what went stale) and returns the ms until its oldest parked frame goes stale, -1 when
# nothing is parked; a driver below calls it.
_ORDER = """
local prefix, size, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now, stale, ts = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local function order(k_offset, k_epoch, k_window, k_pending, topic, offset, epoch, frame)
  local function emit(off, payload, sent)
    redis.call('ZADD', k_window, off, payload)
    redis.call('%(publish)s', topic, off .. ' ' .. sent .. '\\n' .. payload)
    redis.call('SET', k_offset, off)
  end
  local last = tonumber(redis.call('GET', k_offset) or '-1')
  if offset then
    redis.call('SET', k_epoch, epoch)
    if last < 0 or offset == last + 1 then
      emit(offset, frame, ts)
      last = offset
    elseif offset > last then
      redis.call('ZADD', k_pending, offset, now .. ' ' .. ts .. '\\n' .. frame)
    end
  end
  local wait = -1
  while true do
    local head = redis.call('ZRANGE', k_pending, 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    local off = tonumber(head[2])
    local sep = string.find(head[1], ' ', 1, true)
    local nl = string.find(head[1], '\\n', 1, true)
    local queued_at = tonumber(string.sub(head[1], 1, sep - 1))
    if off <= last then
      redis.call('ZREM', k_pending, head[1])
    elseif off == last + 1 or now - queued_at > stale then
      redis.call('ZREM', k_pending, head[1])
      emit(off, string.sub(head[1], nl + 1), string.sub(head[1], sep + 1, nl - 1))
      last = off
    else
      wait = math.max(0, queued_at + stale - now)
      break
    end
  end
  redis.call('ZREMRANGEBYRANK', k_window, 0, -(size + 1))
  redis.call('EXPIRE', k_offset, ttl); redis.call('EXPIRE', k_epoch, ttl)
  redis.call('EXPIRE', k_window, ttl); redis.call('EXPIRE', k_pending, ttl)
  return wait
end
"""

# Single Redis: no KEYS; the key names are derived from each message's channel (as in `_keys`).
# Both drivers return the channels (topics on a cluster) left with parked frames.
_ORDERED_BATCH = _ORDER % {"publish": "PUBLISH"} + """
local parked = {}
for i = 7, #ARGV, 4 do
  local base = prefix .. 'h:{' .. ARGV[i] .. '}:'
  if order(base .. 'offset', base .. 'epoch', base .. 'window', base .. 'pending', prefix .. ARGV[i],
           tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]) >= 0 then
    parked[#parked + 1] = ARGV[i]
  end
end
return parked
"""

# Redis Cluster: KEYS are the four keys of each message in order (all in one slot); each
# message's first ARGV is its shard channel.
_ORDERED_BATCH_DECLARED = _ORDER % {"publish": "SPUBLISH"} + """
local parked = {}
for i = 7, #ARGV, 4 do
  local k = i - 7
  if order(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], ARGV[i],
           tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]) >= 0 then
    parked[#parked + 1] = ARGV[i]
  end
end
return parked
"""

# Release what went stale in one channel, with no new message (ARGV[7]: the channel, or its topic
# on a cluster with its four KEYS): ms until the next parked frame goes stale, or -1.
_RELEASE = _ORDER % {"publish": "PUBLISH"} + """
local base = prefix .. 'h:{' .. ARGV[7] .. '}:'
return order(base .. 'offset', base .. 'epoch', base .. 'window', base .. 'pending', prefix .. ARGV[7])
"""
_RELEASE_DECLARED = _ORDER % {"publish": "SPUBLISH"} + """
return order(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[7])
"""
# KEYS: epoch ; ARGV: new_epoch, ttl
_POSITION_EPOCH = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch, 'EX', tonumber(ARGV[2]))
end
return epoch
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def shard_topic(prefix: str, channel: str) -> str:
    """The shard channel a cluster-mode script publishes `channel` on: in the slot of its keys."""
    return f"{prefix}{{{channel}}}"


def check_prefix(prefix: str) -> str:
    """A brace in the prefix would become the hash tag of every key (see the module docstring)."""
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"Redis key prefix {prefix!r} must not contain '{{' or '}}' (Redis Cluster hash tags)")
    return prefix


# KEYS[1]: a channel's offset key; ARGV[1]: the highest offset this replica delivered without
# Redis (stored while its publish failed). Moves the ordering past it, keeping the key's TTL; a
# missing key needs nothing (the next message is emitted whatever its offset).
_SKIP_TO = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if last >= 0 and last < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
end
return 1
"""


class RedisHistory:
    def __init__(self, client: aioredis.Redis | RedisCluster, *, size: int = 1000, ttl: int = 86400,
                 prefix: str = "vonix:", stale_ms: int = 2000) -> None:
        self.client = client
        self.size = size
        self.ttl = ttl
        self.prefix = check_prefix(prefix)
        self.stale_ms = stale_ms
        self.cluster = isinstance(client, RedisCluster)
        self._assign = client.register_script(_ASSIGN % {"publish": "SPUBLISH" if self.cluster else "PUBLISH"})
        self._ordered = client.register_script(_ORDERED_BATCH_DECLARED if self.cluster else _ORDERED_BATCH)
        self._epoch = client.register_script(_POSITION_EPOCH)
        self._skip_to = client.register_script(_SKIP_TO)
        self._release = client.register_script(_RELEASE_DECLARED if self.cluster else _RELEASE)

    def _keys(self, channel: str) -> list[str]:
        # `_ORDERED_BATCH` builds the same names in Lua (prefix .. 'h:{' .. channel .. '}:'); a test
        # reads back through `recover` and `position` what `publish_stored` wrote, so they agree.
        base = f"{self.prefix}h:{{{channel}}}"
        return [f"{base}:offset", f"{base}:epoch", f"{base}:window", f"{base}:pending"]

    def topic(self, channel: str) -> str:
        """Where the scripts publish `channel`: its shard channel on a cluster, else prefix + channel."""
        return shard_topic(self.prefix, channel) if self.cluster else self.prefix + channel

    async def publish(self, channel: str, parts: FrameParts) -> Published:
        result: Any = await self._assign(keys=self._keys(channel), args=[
            parts.head, parts.middle, parts.tail, self.size, self.ttl, self.topic(channel),
            secrets.token_hex(4), b"%.6f" % time.time()])
        value = result[1]
        return Published(int(result[0]), value.decode() if isinstance(value, bytes) else str(value))

    async def publish_stored(self, stored: Sequence[tuple[str, FrameParts, int, str]]) -> set[str]:
        """One script call for a committed batch; the script orders each message in its channel.
        Returns the channels left with messages parked behind a missing offset (`release_stale`).

        A script Redis does not know (restarted, flushed) is loaded and run again (by redis-py's
        `Script`, or on a cluster by `_publish_stored_by_slot`); running part of a batch twice is
        harmless: the script skips offsets it has seen.
        """
        head = self._head()
        if self.cluster:
            return await self._publish_stored_by_slot(stored, head)
        args = list(head)
        for channel, parts, offset, epoch in stored:
            args += (channel, offset, epoch, parts.build(offset, epoch))
        parked = await self._ordered(keys=(), args=args)
        return {_text(channel) for channel in parked or ()}

    async def release_stale(self, channel: str) -> float | None:
        """Publish the parked messages of `channel` whose missing predecessor is older than
        `stale_ms`; seconds until the next parked one goes stale, or None when none is left.

        Why: the script otherwise looks at `pending` only when another message of the channel comes.
        The missing offset can be one Redis lost (a failover promoted a replica that had not yet
        received the master's last write: replication is asynchronous); on a quiet channel (a DM)
        the message parked behind it would then reach nobody, though stored and acknowledged."""
        keys = self._keys(channel) if self.cluster else ()
        wait = await self._release(keys=keys, args=[*self._head(), self.topic(channel) if self.cluster else channel])
        return None if int(wait) < 0 else int(wait) / 1000

    def _head(self) -> list[Any]:
        now = time.time()
        return [self.prefix, self.size, self.ttl, int(now * 1000), self.stale_ms, b"%.6f" % now]

    async def _publish_stored_by_slot(self, stored: Sequence[tuple[str, FrameParts, int, str]],
                                      head: list[Any]) -> set[str]:
        """Cluster: one script call per slot, with its messages' keys declared, in one pipeline
        (redis-py sends each node its calls at once). A message keeps its place among the others
        of its channel, which share its slot."""
        calls: dict[int, tuple[list[str], list[Any]]] = {}
        channels = {self.topic(channel): channel for channel, _, _, _ in stored}
        for channel, parts, offset, epoch in stored:
            keys = self._keys(channel)
            slot_keys, slot_args = calls.setdefault(key_slot(keys[0].encode()), ([], list(head)))
            slot_keys += keys
            slot_args += (self.topic(channel), offset, epoch, parts.build(offset, epoch))
        for attempt in range(2):
            async with self.client.pipeline(transaction=False) as pipe:
                for keys, args in calls.values():
                    pipe.evalsha(self._ordered.sha, len(keys), *keys, *args)
                try:
                    replies = await pipe.execute()
                    return {channels[_text(topic)] for parked in replies for topic in parked or ()}
                except NoScriptError:
                    if attempt:
                        raise
            self._ordered.sha = await self.client.script_load(self._ordered.script)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def skip_to(self, channel: str, offset: int) -> None:
        """Offsets up to `offset` were stored and delivered while Redis could not be reached: the
        ordering script must not wait for them (it would park every later message in `pending`
        until `stale_ms` ran out and yet another message came). Other replicas fill such a gap
        from the database when the next message shows it."""
        await self._skip_to(keys=[self._keys(channel)[0]], args=[offset])

    async def publish_control(self, channel: str, frame: bytes) -> None:
        payload = envelope(None, time.time(), frame)
        if self.cluster:
            await self.client.spublish(self.topic(channel), payload)
        else:
            await self.client.publish(self.topic(channel), payload)

    async def recover(self, channel: str, since: int, limit: int) -> list[tuple[int, bytes]] | None:
        return (await self.recover_many([(channel, since, limit)]))[0]

    async def recover_many(self, requests: Sequence[tuple[str, int, int]]) -> list[list[tuple[int, bytes]] | None]:
        async with self.client.pipeline(transaction=False) as pipe:
            for channel, since, limit in requests:
                keys = self._keys(channel)
                pipe.get(keys[0])
                pipe.zrangebyscore(keys[2], since + 1, "+inf", start=0, num=limit, withscores=True)
            replies = await pipe.execute()
        return [self._recovered(since, replies[2 * i], replies[2 * i + 1])
                for i, (_, since, _) in enumerate(requests)]

    @staticmethod
    def _recovered(since: int, last_raw: Any, rows: Any) -> list[tuple[int, bytes]] | None:
        last = int(last_raw or 0)
        if since >= last:
            return []
        if not rows or int(rows[0][1]) != since + 1:
            return None
        return [(int(score), frame) for frame, score in rows]

    async def position(self, channel: str) -> Published:
        keys = self._keys(channel)
        epoch = await self._epoch(keys=[keys[1]], args=[secrets.token_hex(4), self.ttl])
        last = await self.client.get(keys[0])
        return Published(int(last or 0), epoch.decode() if isinstance(epoch, bytes) else str(epoch))

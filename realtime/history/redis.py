"""Scaled-mode history: one Lua script assigns or orders the offset, appends and publishes.

Keys per channel share the `{channel}` hash tag (one Redis Cluster slot; the batch script for
committed messages derives the keys of several channels itself, so it needs one Redis primary):
- `{ch}:offset` last offset, `{ch}:epoch` epoch (re-created when Redis lost the history, so
  clients learn their gap cannot be filled from the hot window),
- `{ch}:window` ZSET offset -> frame, trimmed to the newest `size`,
- `{ch}:pending` ZSET of persisted frames that arrived ahead of a missing offset (two replicas
  committed N and N+1 but N+1 reached Redis first); they are published as soon as N arrives, or
  after `stale_ms` if N never comes (its publisher died; the database still has it).
All keys expire after `ttl` seconds without traffic.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from realtime.history.base import FrameParts, Published, envelope

# KEYS: offset, epoch, window, pending ; ARGV: head, middle, tail, size, ttl, channel, new_epoch, ts
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
redis.call('PUBLISH', ARGV[6], offset .. ' ' .. ARGV[8] .. '\\n' .. frame)
return {offset, epoch}
"""

# ARGV: prefix, size, ttl, now_ms, stale_ms, ts, then per message: channel, offset, epoch, frame.
# One call per committed batch: the keys are derived here from the channel (the Python side
# would otherwise encode four key names and five constants per message).
_ORDERED_BATCH = """
local prefix, size, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now, stale, ts = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local function order(channel, offset, epoch, frame)
  local base = prefix .. 'h:{' .. channel .. '}:'
  local k_offset, k_epoch, k_window, k_pending = base .. 'offset', base .. 'epoch', base .. 'window', base .. 'pending'
  local topic = prefix .. channel
  local function emit(off, payload, sent)
    redis.call('ZADD', k_window, off, payload)
    redis.call('PUBLISH', topic, off .. ' ' .. sent .. '\\n' .. payload)
    redis.call('SET', k_offset, off)
  end
  redis.call('SET', k_epoch, epoch)
  local last = tonumber(redis.call('GET', k_offset) or '-1')
  if last >= offset then
    return
  end
  if last < 0 or offset == last + 1 then
    emit(offset, frame, ts)
    last = offset
  else
    redis.call('ZADD', k_pending, offset, now .. ' ' .. ts .. '\\n' .. frame)
  end
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
      break
    end
  end
  redis.call('ZREMRANGEBYRANK', k_window, 0, -(size + 1))
  redis.call('EXPIRE', k_offset, ttl); redis.call('EXPIRE', k_epoch, ttl)
  redis.call('EXPIRE', k_window, ttl); redis.call('EXPIRE', k_pending, ttl)
end
for i = 7, #ARGV, 4 do
  order(ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3])
end
return 1
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


class RedisHistory:
    def __init__(self, client: aioredis.Redis, *, size: int = 1000, ttl: int = 86400, prefix: str = "vonix:",
                 stale_ms: int = 2000) -> None:
        self.client = client
        self.size = size
        self.ttl = ttl
        self.prefix = prefix
        self.stale_ms = stale_ms
        self._assign = client.register_script(_ASSIGN)
        self._ordered = client.register_script(_ORDERED_BATCH)
        self._epoch = client.register_script(_POSITION_EPOCH)

    def _keys(self, channel: str) -> list[str]:
        # `_ORDERED_BATCH` builds the same names in Lua (prefix .. 'h:{' .. channel .. '}:'); a test
        # reads back through `recover` and `position` what `publish_stored` wrote, so they agree.
        base = f"{self.prefix}h:{{{channel}}}"
        return [f"{base}:offset", f"{base}:epoch", f"{base}:window", f"{base}:pending"]

    async def publish(self, channel: str, parts: FrameParts) -> Published:
        result: Any = await self._assign(keys=self._keys(channel), args=[
            parts.head, parts.middle, parts.tail, self.size, self.ttl, self.prefix + channel,
            secrets.token_hex(4), b"%.6f" % time.time()])
        value = result[1]
        return Published(int(result[0]), value.decode() if isinstance(value, bytes) else str(value))

    async def publish_stored(self, stored: Sequence[tuple[str, FrameParts, int, str]]) -> None:
        """One script call for a committed batch; the script orders each message in its channel.

        A script Redis does not know (restarted, flushed) is loaded and run again by redis-py's
        `Script`; running part of a batch twice is harmless: the script skips offsets it has seen.
        """
        now = time.time()
        args: list[Any] = [self.prefix, self.size, self.ttl, int(now * 1000), self.stale_ms, b"%.6f" % now]
        for channel, parts, offset, epoch in stored:
            args += (channel, offset, epoch, parts.build(offset, epoch))
        await self._ordered(keys=(), args=args)

    async def publish_control(self, channel: str, frame: bytes) -> None:
        await self.client.publish(self.prefix + channel, envelope(None, time.time(), frame))

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

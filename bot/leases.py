"""Shard leases: which worker owns which inbound shard, held in Redis with a TTL.

A shard is consumed by exactly one worker at a time, which is what keeps one contact's events in
order across processes. Leases expire on their own when a worker dies (no process-memory state to
lose), and live workers split the shards evenly: each heartbeat says how many workers are alive, so
each takes `ceil(shards / alive)` and gives back the rest.
"""

from __future__ import annotations

from redis.asyncio import Redis

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Scores are Redis server time, so workers on machines with skewed clocks still agree.
_HEARTBEAT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2] * 4)
return redis.call('ZCARD', KEYS[1])
"""


class ShardLeases:
    """Acquire, renew and release leases named `{prefix}:{shard}` for one consumer."""

    def __init__(self, redis: Redis, *, prefix: str, consumer: str, ttl_ms: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._consumer = consumer
        self.ttl_ms = ttl_ms
        self._renew = redis.register_script(_RENEW_LUA)
        self._release = redis.register_script(_RELEASE_LUA)
        self._heartbeat = redis.register_script(_HEARTBEAT_LUA)

    def _key(self, shard: int) -> str:
        return f"{self._prefix}:{shard}"

    async def acquire(self, shard: int) -> bool:
        return bool(
            await self._redis.set(self._key(shard), self._consumer, nx=True, px=self.ttl_ms)
        )

    async def renew(self, shard: int) -> bool:
        return bool(await self._renew(keys=[self._key(shard)], args=[self._consumer, self.ttl_ms]))

    async def release(self, shard: int) -> None:
        await self._release(keys=[self._key(shard)], args=[self._consumer])

    async def heartbeat(self) -> int:
        """Say this consumer is alive; return how many consumers are (at least 1)."""
        alive = await self._heartbeat(
            keys=[f"{self._prefix}:alive"], args=[self._consumer, self.ttl_ms]
        )
        return max(1, int(alive))

    async def leave(self) -> None:
        await self._redis.zrem(f"{self._prefix}:alive", self._consumer)

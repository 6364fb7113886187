"""The 24-hour customer-service window of each contact, in Redis.

Every message a customer writes opens or extends it (from the time Meta says it was written);
our own messages never do. The key holds the time of the customer's last message and expires
24 hours after it, so the window closes by itself and survives restarts; Meta's 131047 (outside
the window) closes it early, because Meta is the authority on it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from bot import redis_keys

WINDOW = timedelta(hours=24)

_OPEN_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local at = tonumber(ARGV[1])
if at > current then
  redis.call('SET', KEYS[1], at, 'PXAT', at + tonumber(ARGV[2]))
  return 1
end
return 0
"""


def _key(contact_id: int) -> str:
    return redis_keys.WINDOW.format(contact_id=contact_id)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class WindowStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._open = redis.register_script(_OPEN_LUA)

    async def open(self, contact_id: int, at: datetime) -> None:
        """A customer message written at `at`: the window runs until `at` + 24 h (never earlier
        than a later message already made it)."""
        await self._open(
            keys=[_key(contact_id)], args=[_ms(at), int(WINDOW.total_seconds() * 1000)]
        )

    async def closes_at(self, contact_id: int) -> datetime | None:
        """When the window closes (or closed), or None when no message opened one."""
        value = await self._redis.get(_key(contact_id))
        if value is None:
            return None
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC) + WINDOW

    async def is_open(self, contact_id: int, now: datetime) -> bool:
        closes = await self.closes_at(contact_id)
        return closes is not None and now < closes

    async def close(self, contact_id: int) -> None:
        await self._redis.delete(_key(contact_id))

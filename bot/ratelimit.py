"""A messages-per-second limit shared by every sender process of one WhatsApp number.

GCRA (the generic cell rate algorithm) in one Lua call against Redis server time: each caller asks
for the next slot and learns how long to wait, so two senders together still send at the number's
rate, not twice it. One key, one round trip per message, no background refill task.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now - burst
if wait > 0 then return wait end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
"""


class RateLimiter:
    """Admit at most `rate` calls per second on `key`, allowing a burst of `burst` calls."""

    def __init__(self, redis: Redis, key: str, rate: float, *, burst: int = 1) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._redis = redis
        self._key = key
        self._interval_us = max(1, round(1_000_000 / rate))
        self._burst_us = self._interval_us * max(0, burst - 1)
        self._script = redis.register_script(_GCRA_LUA)

    async def acquire(self) -> None:
        while True:
            wait_us = int(
                await self._script(keys=[self._key], args=[self._interval_us, self._burst_us])
            )
            if wait_us <= 0:
                return
            await asyncio.sleep(wait_us / 1_000_000)

"""A messages-per-second limit shared by every sender process of one WhatsApp number.

GCRA (the generic cell rate algorithm) in one Lua call against Redis server time: each caller
reserves the next `count` slots and learns how long until the first is due, so two senders
together still send at the number's rate, not twice it. One key, one round trip per reservation
(a whole batch of messages, not each message), no background refill task. A reservation is kept
even when its slots lie in the future, so callers queue up in order instead of polling; slots of
a caller that gives up (cancelled, crashed) are simply not used.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

# ARGV: interval (us), burst allowance (us), how many slots. Returns the microseconds until the
# first reserved slot is due (zero or negative: due now); slot i is due `i * interval` later.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local count = tonumber(ARGV[3] or '1')
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * count
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return tat - now - burst
"""


class RateLimiter:
    """Admit at most `rate` calls per second on `key`, allowing a burst of `burst` calls."""

    def __init__(self, redis: Redis, key: str, rate: float, *, burst: int = 1) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._redis = redis
        self._key = key
        self.rate = rate
        self._interval_us = max(1, round(1_000_000 / rate))
        self._burst_us = self._interval_us * max(0, burst - 1)
        self._script = redis.register_script(_GCRA_LUA)

    async def reserve(self, count: int) -> list[float]:
        """Reserve the next `count` slots; their due times on the event loop's clock."""
        if count <= 0:
            return []
        loop = asyncio.get_running_loop()
        first_us = int(
            await self._script(keys=[self._key], args=[self._interval_us, self._burst_us, count])
        )
        now = loop.time()
        return [now + max(0, first_us + i * self._interval_us) / 1_000_000 for i in range(count)]

    async def acquire(self, count: int = 1) -> None:
        """Wait until `count` more calls are admitted (the last of them is due)."""
        due = await self.reserve(count)
        if due:
            await sleep_until(due[-1])


async def sleep_until(due: float) -> None:
    """Sleep until `due` on the running loop's clock (no sleep when it has passed)."""
    delay = due - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)

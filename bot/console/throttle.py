"""The console's login throttle: at most ``MAX_FAILURES`` wrong tokens per client address in
``FAILURE_WINDOW_S``, however many arrive at once.

Reading the failure count, comparing the token and only then counting the failure let 64
concurrent wrong tokens all be compared. Here a token is compared only after the attempt holds
a slot: one atomic step (a Lua script) refuses when the failures already reach the limit, asks
the attempt to wait when failures plus the attempts being checked right now reach it, and
otherwise records the attempt as being checked. A wrong token then turns its slot into a failure
(the counter's expiry set in the same step), a right one frees it. So no more than the allowed
number of wrong tokens is ever compared, and a burst of right tokens from one address (agents
behind one NAT) waits a few milliseconds for slots instead of being refused.

A slot held by a process that died is given up after ``CHECK_SLOT_MS``; times are the Redis
server's, so processes with skewed clocks agree.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from enum import StrEnum
from typing import Final

from redis.asyncio import Redis

from bot import redis_keys

MAX_FAILURES: Final = 10
FAILURE_WINDOW_S: Final = 900
#: A slot not given back within this long belongs to a process that died.
CHECK_SLOT_MS: Final = 5_000
#: How long an attempt waits for a slot before it is refused as "too many attempts".
WAIT_FOR_SLOT_S: Final = 5.0

_TAKE_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures >= tonumber(ARGV[1]) then
  return 'locked'
end
if failures + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then
  return 'busy'
end
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 'go'
"""

_FAILED_LUA: Final = """
redis.call('ZREM', KEYS[2], ARGV[1])
local failures = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return failures
"""


class Slot(StrEnum):
    GO = "go"
    LOCKED = "locked"
    BUSY = "busy"


class LoginAttempt:
    """One login attempt from ``address``: `take` a slot, compare the token, then report."""

    def __init__(self, redis: Redis, address: str) -> None:
        self._redis = redis
        self._keys = [
            redis_keys.CONSOLE_LOGIN_ATTEMPTS.format(address=address),
            redis_keys.CONSOLE_LOGIN_CHECKS.format(address=address),
        ]
        self._slot = secrets.token_hex(8)

    async def take(self, *, wait_s: float = WAIT_FOR_SLOT_S) -> Slot:
        """`GO`: compare the token. `LOCKED`: too many failures, the address must wait out the
        window. `BUSY`: no slot came free within `wait_s`."""
        script = self._redis.register_script(_TAKE_LUA)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            answer = await script(keys=self._keys, args=[MAX_FAILURES, self._slot, CHECK_SLOT_MS])
            slot = Slot(answer.decode() if isinstance(answer, bytes) else str(answer))
            if slot is not Slot.BUSY or loop.time() >= deadline:
                return slot
            await asyncio.sleep(random.uniform(0.005, 0.02))

    async def failed(self) -> None:
        """The token was wrong: the slot becomes one of the address's failures."""
        script = self._redis.register_script(_FAILED_LUA)
        await script(keys=self._keys, args=[self._slot, FAILURE_WINDOW_S])

    async def succeeded(self) -> None:
        """The token was right: free the slot; a right token uses up nothing."""
        await self._redis.zrem(self._keys[1], self._slot)

"""Slowing campaigns down when Meta says the number sends too fast (error 130429).

The Cloud API client already retries a 130429 with backoff; when it still reaches us (the
retries ran out, or a status webhook reports it), every campaign of the number halves its pace
for `WINDOW_SECONDS`. Reports within the window halve it again, down to 1/32 of the configured
rate (never below one message per second, unless the campaign was set slower than that); a
window without reports restores the full rate. Reports are counted at most once per
`DEBOUNCE_SECONDS`, so a burst of refusals from one batch counts as one signal. The level lives
in Redis, so senders report it and dispatchers in other processes obey it.
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis

from bot import redis_keys

WINDOW_SECONDS: Final = 60
DEBOUNCE_SECONDS: Final = 5
MAX_LEVEL: Final = 5

_REPORT_LUA = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  local level = redis.call('INCR', KEYS[1])
  if level > tonumber(ARGV[3]) then
    level = tonumber(ARGV[3])
    redis.call('SET', KEYS[1], level)
  end
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return level
end
return tonumber(redis.call('GET', KEYS[1]) or '0')
"""


def effective_rate(rate: float, level: int) -> float:
    """The pace after `level` halvings."""
    if level <= 0:
        return rate
    return max(min(rate, 1.0), rate / float(2**level))


class Throttle:
    """The 130429 slow-down level of one WhatsApp number."""

    def __init__(self, redis: Redis, phone_number_id: str) -> None:
        self._redis = redis
        self._key = redis_keys.CAMPAIGN_THROTTLE.format(phone_number_id=phone_number_id)
        self._debounce_key = redis_keys.CAMPAIGN_THROTTLE_DEBOUNCE.format(
            phone_number_id=phone_number_id
        )
        self._script = redis.register_script(_REPORT_LUA)

    async def report(self) -> int:
        """Meta refused for throughput: halve the pace (debounced); return the new level."""
        return int(
            await self._script(
                keys=[self._key, self._debounce_key],
                args=[WINDOW_SECONDS, DEBOUNCE_SECONDS, MAX_LEVEL],
            )
        )

    async def level(self) -> int:
        value = await self._redis.get(self._key)
        return int(value) if value else 0

    async def seconds_left(self) -> int:
        """How long the current slow-down lasts without further reports (0: none)."""
        ttl = int(await self._redis.ttl(self._key))
        return max(0, ttl)

"""Durable flow timers in Redis: a sorted set of due times, with deterministic ids.

Scheduling the same id again replaces the timer (idempotent), cancelling is by id, and nothing
lives in process memory. When a timer comes due, one Lua call removes it and appends its event to
the contact's inbound stream, atomically: a timer fires exactly once, into the same ordered
stream as the customer's messages, whichever worker polls first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from redis.asyncio import Redis

from bot import redis_keys
from bot.eventcodec import encode_event
from bot.streams import inbound_stream, shard_key, shard_of
from flows.events import TimerFired

log = logging.getLogger(__name__)

DUE = redis_keys.TIMERS_DUE.name
STREAMS = redis_keys.TIMERS_STREAMS.name
EVENTS = redis_keys.TIMERS_EVENTS.name

_SCHEDULE_LUA = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
return 1
"""

_CANCEL_LUA = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

# The stream keys are data here (the contact's shard), not declared KEYS: optin-bot runs on one
# Redis, not a cluster.
_FIRE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  local stream = redis.call('HGET', KEYS[2], id)
  local event = redis.call('HGET', KEYS[3], id)
  if stream and event then
    redis.call('XADD', stream, '*', 'e', event)
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
return #due
"""


def timer_id(contact_id: int, kind: str) -> str:
    return f"{contact_id}:{kind}"


class TimerStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._schedule = redis.register_script(_SCHEDULE_LUA)
        self._cancel = redis.register_script(_CANCEL_LUA)
        self._fire = redis.register_script(_FIRE_LUA)

    async def schedule(self, event: TimerFired, due_at: datetime) -> None:
        """Fire `event` at `due_at` (replacing any timer of the same contact and kind)."""
        stream = inbound_stream(shard_of(shard_key(event)))
        await self._schedule(
            keys=[DUE, STREAMS, EVENTS],
            args=[
                timer_id(event.contact_id, event.timer),
                int(due_at.timestamp() * 1000),
                stream,
                encode_event(event),
            ],
        )

    async def cancel(self, contact_id: int, kind: str) -> None:
        await self._cancel(keys=[DUE, STREAMS, EVENTS], args=[timer_id(contact_id, kind)])

    async def due_at(self, contact_id: int, kind: str) -> float | None:
        """The due time (unix seconds) of a scheduled timer, or None."""
        score = await self._redis.zscore(DUE, timer_id(contact_id, kind))
        return None if score is None else float(score) / 1000

    async def fire_due(self, now: datetime, *, limit: int = 500) -> int:
        """Move every timer due by `now` onto its stream; return how many fired."""
        return int(
            await self._fire(keys=[DUE, STREAMS, EVENTS], args=[int(now.timestamp() * 1000), limit])
        )

    async def pending(self) -> int:
        return int(await self._redis.zcard(DUE))


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def run_timer_poller(
    timers: TimerStore,
    stop: asyncio.Event,
    *,
    now: Callable[[], datetime] = _utcnow,
    interval: float = 1.0,
) -> None:
    """Fire due timers once a second until `stop` (the worker role runs one per process)."""
    while not stop.is_set():
        try:
            while await timers.fire_due(now()) > 0:
                pass
        except (OSError, ConnectionError) as exc:
            log.warning("timer poller cannot reach Redis (%s)", exc)
        except Exception:
            log.exception("timer poller failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)

"""Giving a dead CRM event another chance, once the business has fixed its receiver.

An event is given up (`dead`) when the receiver rejected it with a 4xx, answered 410 Gone, or
kept failing for the whole retry window. Its body stays on the dead-letter stream
(`optin:crm:dead`, the newest `DEAD_MAXLEN`), so it can be put back on its contact's shard with
a fresh retry window. The check that it is still dead, the log reset and the re-queue are one
Lua call, so two requests at once queue it once. A redelivered event may arrive after newer
events of the same contact: receivers order consent events by their `seq`, as for any retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from redis.asyncio import Redis

from bot.crm.log import (
    DELIVERY_LOG_TTL_SECONDS,
    Delivery,
    DeliveryLog,
    DeliveryStatus,
    delivery_key,
)
from bot.crm.outbox import CRM_DEAD_STREAM, CRM_SHARDS, crm_stream

SCAN_BATCH: Final = 1000
SHARD_STREAMS: Final = frozenset(crm_stream(shard) for shard in range(CRM_SHARDS))

# KEYS: log hash, shard stream, dead stream. ARGV: event id, body, now_ms, ttl, dead entry id.
_REDELIVER_LUA = """
if redis.call('HGET', KEYS[1], 'status') ~= 'dead' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'pending', 'attempts', 0, 'enqueued_at', ARGV[3],
  'finished_at', '', 'next_attempt_at', '', 'dead_reason', '', 'last_error', '',
  'last_status_code', '')
redis.call('HDEL', KEYS[1], 'first_attempt_at', 'last_attempt_at')
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'body', ARGV[2], 'at', ARGV[3])
redis.call('XDEL', KEYS[3], ARGV[5])
return 1
"""


class Refusal(StrEnum):
    """Why an event cannot be redelivered (the API's error codes)."""

    UNKNOWN = "unknown_delivery"
    NOT_DEAD = "not_dead"
    NOT_RETAINED = "not_retained"


@dataclass(frozen=True, slots=True)
class Redelivery:
    """The event's log entry after the request, or why nothing was done."""

    delivery: Delivery | None
    refused: Refusal | None = None


async def _dead_entry(redis: Redis, event_id: str) -> tuple[str, dict[str, str]] | None:
    """The newest dead-letter entry of `event_id`, searched from the newest end."""
    upper = "+"
    while True:
        entries: Any = await redis.xrevrange(CRM_DEAD_STREAM, max=upper, count=SCAN_BATCH)
        for entry_id, fields in entries or []:
            if fields.get("id") == event_id:
                return str(entry_id), dict(fields)
        if len(entries or []) < SCAN_BATCH:
            return None
        upper = "(" + str(entries[-1][0])


async def redeliver(
    redis: Redis, event_id: str, *, clock: Callable[[], float] = time.time
) -> Redelivery:
    """Queue a dead event again on its shard with a fresh retry window."""
    log = DeliveryLog(redis)
    delivery = await log.get(event_id)
    if delivery is None:
        return Redelivery(None, Refusal.UNKNOWN)
    if delivery.status is not DeliveryStatus.DEAD:
        return Redelivery(delivery, Refusal.NOT_DEAD)
    found = await _dead_entry(redis, event_id)
    stream = found[1].get("stream", "") if found else ""
    if found is None or not found[1].get("body") or stream not in SHARD_STREAMS:
        return Redelivery(delivery, Refusal.NOT_RETAINED)
    entry_id, fields = found
    script = redis.register_script(_REDELIVER_LUA)
    queued = await script(
        keys=[delivery_key(event_id), stream, CRM_DEAD_STREAM],
        args=[event_id, fields["body"], int(clock() * 1000), DELIVERY_LOG_TTL_SECONDS, entry_id],
    )
    after = await log.get(event_id)
    return Redelivery(after, None if queued else Refusal.NOT_DEAD)

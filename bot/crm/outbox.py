"""The CRM outbox: CRM events queued on Redis Streams, sharded by contact.

Events of one contact always land on the same shard stream, in the order they were announced,
and one deliverer at a time owns a shard (`bot.crm.deliverer`), which is what delivers them in
order. Queueing is one Lua call per batch: for each event not seen before (no delivery log
entry), write its log entry as `pending`, append it to its shard and to the log's indexes, all
atomically, so a crash never leaves an event queued without a log entry or the other way round,
and a re-announced event (same id) is dropped.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Final

from redis.asyncio import Redis

from bot import redis_keys
from bot.crm.events import CrmEvent
from bot.crm.log import (
    CONTACT_INDEX_MAXLEN,
    DELIVERY_LOG_TTL_SECONDS,
    LOG_INDEX_MAXLEN,
    LOG_INDEX_STREAM,
    contact_index,
    delivery_key,
)

# Fixed, not configurable: changing it while events are queued would break per-contact order.
CRM_SHARDS: Final = 16
CRM_DEAD_STREAM: Final = redis_keys.CRM_DEAD_LETTERS.name
DEAD_MAXLEN: Final = 100_000

# KEYS per event: log hash, shard stream, contact index; then the global index last.
# ARGV per event: id, type, body, contact_id, wa_id, user_id; then now_ms, ttl, maxlens.
_ENQUEUE_LUA = """
local n = (#KEYS - 1) / 3
local base = n * 6
local now, ttl = ARGV[base + 1], ARGV[base + 2]
local index_max, contact_max = ARGV[base + 3], ARGV[base + 4]
local queued = 0
for i = 0, n - 1 do
  local log, stream, contact = KEYS[i * 3 + 1], KEYS[i * 3 + 2], KEYS[i * 3 + 3]
  local id = ARGV[i * 6 + 1]
  if redis.call('EXISTS', log) == 0 then
    redis.call('HSET', log, 'event_id', id, 'type', ARGV[i * 6 + 2], 'status', 'pending',
      'attempts', 0, 'contact_id', ARGV[i * 6 + 4], 'wa_id', ARGV[i * 6 + 5],
      'user_id', ARGV[i * 6 + 6], 'enqueued_at', now)
    redis.call('EXPIRE', log, ttl)
    redis.call('XADD', stream, '*', 'id', id, 'body', ARGV[i * 6 + 3], 'at', now)
    redis.call('XADD', KEYS[#KEYS], 'MAXLEN', '~', index_max, '*', 'id', id)
    redis.call('XADD', contact, 'MAXLEN', '~', contact_max, '*', 'id', id)
    redis.call('EXPIRE', contact, ttl)
    queued = queued + 1
  end
end
return queued
"""


def crm_stream(shard: int) -> str:
    return redis_keys.CRM_OUTBOX.format(shard=shard)


def crm_shard(contact_id: int) -> int:
    """Stable shard of a contact (the same in every process: not Python's salted hash())."""
    digest = hashlib.blake2b(f"contact:{contact_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % CRM_SHARDS


class CrmOutbox:
    """Queues CRM events for delivery; `enqueue` is idempotent per event id."""

    def __init__(self, redis: Redis, *, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._clock = clock
        self._enqueue = redis.register_script(_ENQUEUE_LUA)

    async def enqueue(self, events: Sequence[CrmEvent]) -> int:
        """Queue `events` in order; return how many were new (the rest were known already)."""
        if not events:
            return 0
        keys: list[str] = []
        args: list[str | int] = []
        for event in events:
            keys += [
                delivery_key(event.event_id),
                crm_stream(crm_shard(event.contact_id)),
                contact_index(event.contact_id),
            ]
            args += [
                event.event_id,
                event.type,
                event.body,
                event.contact_id,
                event.wa_id or "",
                event.user_id or "",
            ]
        keys.append(LOG_INDEX_STREAM)
        now_ms = int(self._clock() * 1000)
        args += [now_ms, DELIVERY_LOG_TTL_SECONDS, LOG_INDEX_MAXLEN, CONTACT_INDEX_MAXLEN]
        return int(await self._enqueue(keys=keys, args=args))


async def queued_events(redis: Redis) -> int:
    """CRM events waiting for delivery, over every shard."""
    pipe = redis.pipeline(transaction=False)
    for shard in range(CRM_SHARDS):
        pipe.xlen(crm_stream(shard))
    return sum(int(n) for n in await pipe.execute())

"""Redis Stream names and the durable, de-duplicating hand-off from the webhook to the workers.

The webhook answers 200 only after its events are stream entries, so a crash after the 200 loses
nothing. Events are sharded by contact onto `INBOUND_SHARDS` streams: one worker owns a shard at a
time (see `bot.inbound`), which keeps each contact's events in order while different contacts run
in parallel. De-duplication happens in the same Lua call as the XADD: a redelivered webhook (same
message id, same status id + status) is dropped atomically, across every web process, for
`DEDUPE_TTL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot import redis_keys
from bot.eventcodec import encode_event
from flows.events import Event

# Fixed, not configurable: changing it while entries are queued would break per-contact order.
INBOUND_SHARDS = 16
INBOUND_GROUP = "workers"
OUTBOUND_STREAM = redis_keys.OUTBOUND.name
OUTBOUND_GROUP = "senders"
UNKNOWN_STREAM = redis_keys.UNKNOWN.name
DEAD_LETTER_STREAM = redis_keys.DEAD_LETTERS.name
#: The dead-letter stream keeps this many entries, the newest; adding one more trims the oldest,
#: and the caller logs and counts what went (`add_dead_letter`).
DEAD_LETTER_MAXLEN = 100_000
DEDUPE_TTL_SECONDS = 7 * 24 * 3600
BUSINESS_SHARD_KEY = "business"

_ACCEPT_LUA = """
local ttl = ARGV[#ARGV]
local added = {}
for i = 1, #KEYS, 2 do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ttl) then
    redis.call('XADD', KEYS[i + 1], '*', 'e', ARGV[(i + 1) / 2])
    added[#added + 1] = 1
  else
    added[#added + 1] = 0
  end
end
return added
"""


# Trim exactly the oldest entries beyond the cap (ARGV[1]) and say which went: their ids and the
# value of their field ARGV[2] (the event). XADD's own MAXLEN ~ drops whole blocks without a word.
_TRIM_LUA_BODY = """
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
local trimmed = {}
if excess > 0 then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)) do
    redis.call('XDEL', KEYS[1], entry[1])
    local named = ''
    for i = 1, #entry[2], 2 do
      if entry[2][i] == ARGV[2] then named = entry[2][i + 1] end
    end
    trimmed[#trimmed + 1] = entry[1]
    trimmed[#trimmed + 1] = named
  end
end
"""
_TRIM_LUA = _TRIM_LUA_BODY + "return trimmed\n"
# The same, after adding an entry (its fields from ARGV[3]) in the same step.
_ADD_AND_TRIM_LUA = (
    "local added = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))\n"
    + _TRIM_LUA_BODY
    + "return {added, trimmed}\n"
)


@dataclass(frozen=True, slots=True)
class Trimmed:
    """An entry removed from a full dead-letter stream to make room for newer ones: its entry
    id and the event it held (the value of the field named when trimming)."""

    entry_id: str
    event: str


def _trimmed(flat: list[Any]) -> list[Trimmed]:
    values = [str(value) for value in flat]
    return [Trimmed(values[i], values[i + 1]) for i in range(0, len(values), 2)]


async def add_dead_letter(
    redis: Redis,
    fields: dict[str, str],
    *,
    stream: str = DEAD_LETTER_STREAM,
    maxlen: int = DEAD_LETTER_MAXLEN,
    event_field: str = "e",
) -> tuple[str, list[Trimmed]]:
    """Add `fields` to a dead-letter stream; return the new entry's id and the oldest entries
    removed to keep it at `maxlen` (none until it is full), for the caller to log and count."""
    flat = [item for pair in fields.items() for item in pair]
    script = redis.register_script(_ADD_AND_TRIM_LUA)
    added, trimmed = await script(keys=[stream], args=[maxlen, event_field, *flat])
    return str(added), _trimmed(trimmed)


async def trim_dead_letters(
    redis: Redis, stream: str, *, maxlen: int, event_field: str
) -> list[Trimmed]:
    """Trim a dead-letter stream to its newest `maxlen` entries; return what went."""
    script = redis.register_script(_TRIM_LUA)
    return _trimmed(await script(keys=[stream], args=[maxlen, event_field]))


def inbound_stream(shard: int) -> str:
    return redis_keys.INBOUND.format(shard=shard)


def shard_of(key: str) -> int:
    """Stable shard for a contact key (same in every process: not Python's salted hash())."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % INBOUND_SHARDS


def shard_key(event: Event) -> str:
    contact = event.contact
    return contact.key if contact is not None else BUSINESS_SHARD_KEY


def dedupe_key(event_id: str) -> str:
    return redis_keys.SEEN.format(event_id=event_id)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What one webhook body turned into: events queued, and redeliveries dropped."""

    queued: int
    duplicates: int


class InboundQueue:
    """The webhook side of the inbound streams.

    Concurrent requests are committed together: each `accept` joins the batch that the next loop
    iteration sends as one Lua call, and resumes when that call has answered. Under load this
    turns hundreds of round trips into a few, without delaying a lone request by more than one
    turn of the event loop; atomicity per event is unchanged.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._accept = redis.register_script(_ACCEPT_LUA)
        self._batch: list[tuple[Sequence[Event], asyncio.Future[Accepted]]] = []
        self._flushing: set[asyncio.Task[None]] = set()

    async def accept(self, events: Sequence[Event]) -> Accepted:
        """Queue `events` durably, dropping any seen in the last 7 days."""
        if not events:
            return Accepted(0, 0)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Accepted] = loop.create_future()
        if not self._batch:
            loop.call_soon(self._start_flush)
        self._batch.append((events, future))
        return await future

    def _start_flush(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush(self._batch))
        self._batch = []
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[tuple[Sequence[Event], asyncio.Future[Accepted]]]) -> None:
        keys: list[str] = []
        args: list[str] = []
        for events, _ in batch:
            for event in events:
                keys.append(dedupe_key(event.event_id))
                keys.append(inbound_stream(shard_of(shard_key(event))))
                args.append(encode_event(event))
        args.append(str(DEDUPE_TTL_SECONDS))
        try:
            flags = [int(f) for f in await self._accept(keys=keys, args=args)]
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        position = 0
        for events, future in batch:
            queued = sum(flags[position : position + len(events)])
            position += len(events)
            if not future.done():
                future.set_result(Accepted(queued, len(events) - queued))


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it exists."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


# The in-process Redis answers a blocking read at once when nothing is there; readers then poll at
# this interval instead of spinning.
EMPTY_READ_PAUSE_SECONDS = 0.02

T = TypeVar("T")


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """`await work`, or cancel it and return None as soon as `stop` is set.

    A reader blocked on an empty stream would otherwise hold every shutdown (each test's app, each
    SIGTERM) for its whole block interval. Cancelling a blocking read is safe: the client drops
    that connection, and entries the server may have handed over in that instant stay pending
    for this consumer, which is the path a crashed reader's entries already take (adopted by the
    shard's next owner, reclaimed after the visibility timeout for the sender). A read that
    finished is returned even when `stop` came at the same time."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))  # unlike `await task`, never swallows our own cancel
    return None if task.cancelled() else task.result()


async def read_group(
    redis: Redis,
    group: str,
    consumer: str,
    stream: str,
    last_id: str,
    *,
    count: int,
    block_ms: int | None,
    stop: asyncio.Event | None = None,
) -> list[tuple[str, dict[str, str]]]:
    """XREADGROUP on one stream, returning its entries; never spins on an empty stream. A
    blocking read gives up (no entries) once `stop` is set (see `unless_stopped`)."""
    if stop is not None and block_ms and stop.is_set():
        return []  # no read is sent, so nothing is left pending on a consumer going away
    loop = asyncio.get_running_loop()
    started = loop.time()
    read = redis.xreadgroup(group, consumer, {stream: last_id}, count=count, block=block_ms)
    reply: Any = await (read if stop is None or not block_ms else unless_stopped(read, stop))
    # RESP2 shape (the client's default): [[stream, [(id, fields), ...]]]
    entries: list[tuple[str, dict[str, str]]] = reply[0][1] if reply else []
    if not entries and block_ms and loop.time() - started < block_ms / 2000:
        pause = asyncio.sleep(min(EMPTY_READ_PAUSE_SECONDS, block_ms / 1000))
        await (pause if stop is None else unless_stopped(pause, stop))
    return entries


def is_missing_stream(exc: ResponseError) -> bool:
    """The stream or its group is gone (Redis restarted empty, or was flushed): recreate it."""
    text = str(exc)
    return "NOGROUP" in text or "no longer exists" in text


async def queue_depths(redis: Redis) -> dict[str, int]:
    """Entries waiting (or in flight) per queue, for the `optin_queue_depth` gauge."""
    pipe = redis.pipeline(transaction=False)
    for shard in range(INBOUND_SHARDS):
        pipe.xlen(inbound_stream(shard))
    pipe.xlen(OUTBOUND_STREAM)
    pipe.xlen(DEAD_LETTER_STREAM)
    lengths = [int(n) for n in await pipe.execute()]
    return {
        "inbound": sum(lengths[:INBOUND_SHARDS]),
        "outbound": lengths[INBOUND_SHARDS],
        "dead_letter": lengths[INBOUND_SHARDS + 1],
    }

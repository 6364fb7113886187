"""The inbound worker: consumes the sharded event streams and hands each event to the pipeline.

Each shard is owned by one worker at a time (`bot.leases`); within a shard, entries are handled one
after another and acknowledged only after the handler finished, so a crash re-delivers the entry to
the next owner (handlers are idempotent: the database refuses a second row for the same wamid).
A failing entry is retried in place, which holds back that shard (and so that contact's later
events) instead of reordering them: infrastructure failures (database or Redis down) are retried
until they recover, any other error `MAX_ATTEMPTS` times before the entry goes to the dead-letter
stream with the error, so one poisoned event cannot block a shard for ever. A dead event is logged
at ERROR and counted (`optin_dead_events_total{reason}`); `bot.dead_events` lists and replays it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot import redis_keys
from bot.eventcodec import decode_event
from bot.metrics import Metrics
from bot.shardowner import ShardOwner
from bot.streams import (
    DEAD_LETTER_MAXLEN,
    DEAD_LETTER_STREAM,
    INBOUND_GROUP,
    INBOUND_SHARDS,
    Trimmed,
    add_dead_letter,
    ensure_group,
    inbound_stream,
    is_missing_stream,
    read_group,
)
from bot.transient import TRANSIENT_ERRORS, is_transient
from flows.events import Event

log = logging.getLogger(__name__)

EventHandler = Callable[[Event], Awaitable[None]]

MAX_ATTEMPTS = 5
#: The first pause before an event is tried again; each next pause doubles, up to the cap. Five
#: failing attempts thus keep a contact's later events waiting about a second before the event is
#: dead-lettered (tests that dead-letter on purpose shorten it).
FIRST_RETRY_SECONDS = 0.1
READ_COUNT = 50
READ_BLOCK_MS = 1000


class InboundWorker:
    """Owns a fair share of the inbound shards and drains them through `handler`."""

    def __init__(
        self,
        redis: Redis,
        handler: EventHandler,
        *,
        consumer: str,
        lease_ms: int = 15_000,
        retry_cap_seconds: float = 5.0,
        metrics: Metrics | None = None,
        dead_letter_maxlen: int = DEAD_LETTER_MAXLEN,
    ) -> None:
        self._redis = redis
        self._metrics = metrics
        self._dead_letter_maxlen = dead_letter_maxlen
        self._handler = handler
        self._consumer = consumer
        self._owner = ShardOwner(
            redis,
            self._consume,
            shards=INBOUND_SHARDS,
            lease_prefix=redis_keys.INBOUND_LEASES.prefix,
            consumer=consumer,
            lease_ms=lease_ms,
            name="inbound",
            transient=TRANSIENT_ERRORS,
        )
        self._retry_cap = retry_cap_seconds
        self._block_ms = min(READ_BLOCK_MS, lease_ms // 3)

    @property
    def owned_shards(self) -> frozenset[int]:
        return self._owner.owned_shards

    async def run(self, stop: asyncio.Event) -> None:
        """Balance leases and consume until `stop` is set; then finish in-flight entries."""
        for shard in range(INBOUND_SHARDS):
            await ensure_group(self._redis, inbound_stream(shard), INBOUND_GROUP)
        await self._owner.run(stop)

    async def _consume(self, shard: int, stopping: asyncio.Event) -> None:
        stream = inbound_stream(shard)
        # Whoever held this shard before us may have died mid-entry: adopt its pending entries
        # (we hold the lease, so nobody else is working on them) and handle them first, in order.
        cursor = "0-0"
        while True:
            reply = await self._redis.xautoclaim(
                stream, INBOUND_GROUP, self._consumer, 0, cursor, count=100
            )
            cursor = reply[0]
            if cursor == "0-0":
                break
        read_from = "0"
        while not stopping.is_set():
            try:
                entries = await read_group(
                    self._redis,
                    INBOUND_GROUP,
                    self._consumer,
                    stream,
                    read_from,
                    count=READ_COUNT,
                    block_ms=None if read_from == "0" else self._block_ms,
                    stop=stopping,
                )
            except TRANSIENT_ERRORS as exc:
                log.warning("shard %d: cannot read from Redis (%s)", shard, exc)
                await asyncio.sleep(1.0)
                # A read whose answer was lost left its entries pending on us: take them first.
                read_from = "0"
                continue
            except ResponseError as exc:
                if not is_missing_stream(exc):
                    raise
                log.warning("shard %d: stream or group vanished (%s); recreating", shard, exc)
                await ensure_group(self._redis, stream, INBOUND_GROUP)
                continue
            if not entries:
                read_from = ">"
                continue
            for entry_id, fields in entries:
                await self._handle_entry(stream, entry_id, fields)
                if stopping.is_set():
                    return

    async def _handle_entry(self, stream: str, entry_id: str, fields: dict[str, str]) -> None:
        try:
            event = decode_event(fields["e"])
        except Exception as exc:
            await self._dead_letter(
                stream, entry_id, fields, f"undecodable: {exc}", reason="undecodable", attempts=1
            )
            return
        attempts = 0
        delay = FIRST_RETRY_SECONDS
        while True:
            try:
                await self._handler(event)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    log.warning("event %s waits: %s", event.event_id, exc)
                else:
                    attempts += 1
                    log.exception("event %s failed (attempt %d)", event.event_id, attempts)
                    if attempts >= MAX_ATTEMPTS:
                        await self._dead_letter(
                            stream,
                            entry_id,
                            fields,
                            repr(exc),
                            reason="failed",
                            attempts=attempts,
                            event_id=event.event_id,
                        )
                        return
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self._retry_cap)
        await self._ack(stream, entry_id)

    async def _ack(self, stream: str, entry_id: str) -> None:
        while True:
            try:
                pipe = self._redis.pipeline(transaction=True)
                pipe.xack(stream, INBOUND_GROUP, entry_id)
                pipe.xdel(stream, entry_id)
                await pipe.execute()
                return
            except TRANSIENT_ERRORS as exc:
                log.warning("cannot acknowledge %s (%s); retrying", entry_id, exc)
                await asyncio.sleep(1.0)

    async def _dead_letter(
        self,
        stream: str,
        entry_id: str,
        fields: dict[str, str],
        error: str,
        *,
        reason: str,
        attempts: int,
        event_id: str = "",
    ) -> None:
        """Give the entry up: onto the dead-letter stream (where `bot.dead_events` lists and
        replays it), logged at ERROR and counted in `optin_dead_events_total{reason}`."""
        dead_id, trimmed = await add_dead_letter(
            self._redis,
            {
                "stream": stream,
                "entry": entry_id,
                "error": error[:2000],
                "reason": reason,
                "attempts": str(attempts),
                "event_id": event_id,
                "e": fields.get("e", ""),
            },
            maxlen=self._dead_letter_maxlen,
        )
        log.error(
            "event %s (entry %s on %s) is dead (%s after %d attempt(s)): %s; kept as %s on %s "
            "for `optin-bot dead replay`",
            event_id or "(undecodable)",
            entry_id,
            stream,
            reason,
            attempts,
            error[:500],
            dead_id,
            DEAD_LETTER_STREAM,
        )
        if self._metrics is not None:
            self._metrics.dead_events.labels(reason=reason).inc()
        if trimmed:
            self._report_trimmed(trimmed)
        await self._ack(stream, entry_id)

    def _report_trimmed(self, trimmed: list[Trimmed]) -> None:
        """Never silently: the dead-letter stream was full, so its oldest entries are gone."""
        events = []
        for entry in trimmed:
            try:
                events.append(decode_event(entry.event).event_id)
            except Exception:
                events.append("(undecodable)")
        log.error(
            "%s is full (%d entries): trimmed %d oldest dead events, entries %s, events %s",
            DEAD_LETTER_STREAM,
            self._dead_letter_maxlen,
            len(trimmed),
            ", ".join(entry.entry_id for entry in trimmed),
            ", ".join(events),
        )
        if self._metrics is not None:
            self._metrics.dead_letters_trimmed.labels(stream=DEAD_LETTER_STREAM).inc(len(trimmed))

"""The CRM deliverer: drains the CRM shard streams to the business's webhook, in order per contact.

Each shard is owned by one deliverer at a time (`bot.leases`, prefix `optin:lease:crm`), in any
number of processes. The owner reads the head of its shard, POSTs it (`bot.crm.attempt`) and
deletes it only once its outcome is logged, in the same transaction. A head that fails is
retried with backoff while the entries behind it wait, which is the per-contact order; other
shards, and so other contacts, keep flowing. The attempt count and the time of the next attempt
live in the delivery log, not in memory, so a restarted or replacing deliverer carries on with
the same backoff and the same retry window: an event is given up only once it has waited
`RetryPolicy.give_up_after` (48 hours by default) since it was queued.

Delivery is at least once: a deliverer killed while a POST is in flight sends that event again,
with the same `X-Optin-Event-Id`, for the receiver to recognise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
from redis.asyncio import Redis

from bot import redis_keys
from bot.crm.attempt import AttemptResult, RetryPolicy, Verdict, post_event
from bot.crm.log import DeadReason, DeliveryLog, DeliveryStatus
from bot.crm.outbox import CRM_DEAD_STREAM, CRM_SHARDS, DEAD_MAXLEN, crm_stream
from bot.crm.pause import PAUSE_KEY, Pause, current_pause, encode_pause, resume, url_digest
from bot.metrics import Metrics
from bot.shardowner import ShardOwner
from bot.streams import EMPTY_READ_PAUSE_SECONDS, trim_dead_letters, unless_stopped
from bot.transient import TRANSIENT_ERRORS, is_transient

log = logging.getLogger(__name__)

LEASE_PREFIX: Final = redis_keys.CRM_LEASES.prefix
READ_BLOCK_MS: Final = 1000
#: How often a waiting head looks again whether delivery was paused or resumed meanwhile.
RECHECK_SECONDS: Final = 5.0

Entry = tuple[str, dict[str, str]]


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class CrmDeliverer:
    """Owns a fair share of the CRM shards and delivers their events to `url`."""

    def __init__(
        self,
        redis: Redis,
        session: aiohttp.ClientSession,
        *,
        url: str,
        secret: str,
        consumer: str,
        metrics: Metrics | None = None,
        policy: RetryPolicy | None = None,
        lease_ms: int = 15_000,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._redis = redis
        self._session = session
        self._url = url
        self._url_digest = url_digest(url)
        self._secret = secret
        self._metrics = metrics
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._rng = rng or random.Random()
        self._log = DeliveryLog(redis)
        self._owner = ShardOwner(
            redis,
            self._consume,
            shards=CRM_SHARDS,
            lease_prefix=LEASE_PREFIX,
            consumer=consumer,
            lease_ms=lease_ms,
            name="CRM",
            transient=TRANSIENT_ERRORS,
        )
        self._block_ms = min(READ_BLOCK_MS, lease_ms // 3)
        self._recheck = min(RECHECK_SECONDS, lease_ms / 3000)

    @property
    def owned_shards(self) -> frozenset[int]:
        return self._owner.owned_shards

    async def run(self, stop: asyncio.Event) -> None:
        """Balance leases and deliver until `stop` is set; then finish in-flight attempts."""
        log.info("CRM events go to %s", _where(self._url))
        await self._lift_foreign_pause()
        await self._owner.run(stop)

    async def _lift_foreign_pause(self) -> None:
        """A pause for another URL is over: the business has configured a new receiver."""
        paused = await current_pause(self._redis)
        if paused is not None and paused.url_digest != self._url_digest:
            await resume(self._redis)
            log.info("BUSINESS_WEBHOOK_URL changed since the last 410 Gone: delivery resumes")

    # ---- one shard -------------------------------------------------------------------------------

    async def _consume(self, shard: int, stopping: asyncio.Event) -> None:
        stream = crm_stream(shard)
        while not stopping.is_set():
            try:
                head = await self._head(stream, stopping)
                if head is not None:
                    await self._deliver(stream, head, stopping)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("CRM shard %d: cannot reach Redis or the database (%r)", shard, exc)
                await _sleep_unless(stopping, 1.0)

    async def _head(self, stream: str, stopping: asyncio.Event) -> Entry | None:
        """The oldest entry of `stream`, waiting up to a block interval for one (less once
        `stopping` is set: a plain XREAD consumes nothing, so giving it up loses nothing)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        read = self._redis.xread({stream: "0-0"}, count=1, block=self._block_ms)
        reply: Any = await unless_stopped(read, stopping)
        if reply:
            entry_id, fields = reply[0][1][0]
            return entry_id, fields
        # The in-process Redis answers a blocking read at once: do not spin.
        if loop.time() - started < self._block_ms / 2000:
            await _sleep_unless(stopping, EMPTY_READ_PAUSE_SECONDS)
        return None

    async def _deliver(self, stream: str, entry: Entry, stopping: asyncio.Event) -> None:
        entry_id, fields = entry
        event_id, body, queued = fields.get("id", ""), fields.get("body"), fields.get("at", "")
        if not event_id or body is None or not queued.isdigit():
            log.error("unreadable CRM entry %s on %s: dead-lettered", entry_id, stream)
            await self._finish(
                stream, entry, DeliveryStatus.DEAD, None, "unreadable entry", DeadReason.MALFORMED
            )
            return
        record = await self._log.get(event_id)
        if record is not None and record.status in (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD):
            await self._redis.xdel(stream, entry_id)  # decided already; the entry outlived it
            return
        deadline = int(queued) / 1000 + self._policy.give_up_after
        attempts = record.attempts if record is not None else 0
        next_at = (record.next_attempt_at or 0) / 1000 if record is not None else 0.0
        payload = body.encode()
        while not stopping.is_set():
            if await self._paused():
                await _sleep_unless(stopping, self._recheck)
                continue
            wait = next_at - self._clock()
            if wait > 0:
                await _sleep_unless(stopping, min(wait, self._recheck))
                continue
            attempts += 1
            await self._log.attempt_started(event_id, attempts, _ms(self._clock()))
            result = await post_event(
                self._session,
                self._url,
                self._secret,
                event_id=event_id,
                body=payload,
                attempt=attempts,
                client_timeout=self._policy.timeout(),
                now=self._clock(),
            )
            retry_at = await self._settle(stream, entry, result, attempts, deadline)
            if retry_at is None:
                return
            next_at = retry_at

    async def _settle(
        self, stream: str, entry: Entry, result: AttemptResult, attempts: int, deadline: float
    ) -> float | None:
        """Record what an attempt came to; return when to try again, None when it is over."""
        event_id = entry[1]["id"]
        code, error = result.status_code, result.error
        if result.verdict is Verdict.DELIVERED:
            await self._finish(stream, entry, DeliveryStatus.DELIVERED, code, None, None)
            self._count("delivered")
            return None
        if result.verdict is Verdict.GONE:
            log.error(
                "the CRM receiver answered 410 Gone to %s: event dead-lettered, delivery paused "
                "until BUSINESS_WEBHOOK_URL changes or POST /v1/webhooks/resume",
                event_id,
            )
            gone = Pause(self._url_digest, event_id, _ms(self._clock()))
            await self._finish(
                stream, entry, DeliveryStatus.DEAD, code, error, DeadReason.GONE, pause=gone
            )
            self._count("gone")
            return None
        if result.verdict is Verdict.REJECTED:
            log.warning("the CRM receiver rejected %s for good: %s", event_id, error)
            await self._finish(stream, entry, DeliveryStatus.DEAD, code, error, DeadReason.REJECTED)
            self._count("rejected")
            return None
        now = self._clock()
        if now >= deadline:
            log.error("CRM event %s still failing after %d attempts: given up", event_id, attempts)
            await self._finish(stream, entry, DeliveryStatus.DEAD, code, error, DeadReason.EXPIRED)
            self._count("expired")
            return None
        retry_at = min(now + self._policy.delay(attempts, result.retry_after, self._rng), deadline)
        log.info("CRM event %s attempt %d failed (%s); retrying", event_id, attempts, error)
        await self._log.attempt_failed(
            event_id, status_code=code, error=error, next_attempt_ms=_ms(retry_at)
        )
        self._count("retried")
        return retry_at

    async def _finish(
        self,
        stream: str,
        entry: Entry,
        status: DeliveryStatus,
        status_code: int | None,
        error: str | None,
        reason: DeadReason | None,
        *,
        pause: Pause | None = None,
    ) -> None:
        """Log the outcome and take the entry off its shard (onto the dead-letter stream when
        given up), atomically; a cancellation arriving meanwhile waits for it."""
        entry_id, fields = entry
        event_id = fields.get("id", "")
        now = _ms(self._clock())
        pipe = self._redis.pipeline(transaction=True)
        if event_id:
            DeliveryLog.finish(
                pipe,
                event_id,
                status,
                at_ms=now,
                status_code=status_code,
                error=error,
                dead_reason=reason,
            )
        if status is DeliveryStatus.DEAD:
            pipe.xadd(
                CRM_DEAD_STREAM,
                {
                    "id": event_id,
                    "reason": reason.value if reason else "",
                    "status_code": "" if status_code is None else str(status_code),
                    "error": (error or "")[:2000],
                    "stream": stream,
                    "entry": entry_id,
                    "at": fields.get("at", ""),
                    "body": fields.get("body", ""),
                },
            )
        if pause is not None:
            pipe.set(PAUSE_KEY, encode_pause(pause))
        pipe.xdel(stream, entry_id)
        await asyncio.shield(pipe.execute())
        if status is DeliveryStatus.DEAD:
            await self._trim_dead()

    async def _trim_dead(self) -> None:
        """Keep the newest `DEAD_MAXLEN` given-up events, and never drop one silently."""
        trimmed = await trim_dead_letters(
            self._redis, CRM_DEAD_STREAM, maxlen=DEAD_MAXLEN, event_field="id"
        )
        if not trimmed:
            return
        log.error(
            "%s is full (%d entries): trimmed %d oldest given-up CRM events, entries %s, events %s",
            CRM_DEAD_STREAM,
            DEAD_MAXLEN,
            len(trimmed),
            ", ".join(entry.entry_id for entry in trimmed),
            ", ".join(entry.event for entry in trimmed),
        )
        if self._metrics is not None:
            self._metrics.dead_letters_trimmed.labels(stream=CRM_DEAD_STREAM).inc(len(trimmed))

    async def _paused(self) -> bool:
        paused = await current_pause(self._redis)
        return paused is not None and paused.url_digest == self._url_digest

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.crm_deliveries.labels(result=result).inc()


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=max(seconds, 0.0))


def _where(url: str) -> str:
    """The receiver's scheme and host, for logs (a URL's path or query may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

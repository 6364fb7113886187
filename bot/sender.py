"""The sender loop: drains the outbound stream to the Cloud API at the number's rate.

Several senders may run at once (consumer group `senders`); the rate limit is shared through
Redis. Messages to one contact keep their order within a batch, different contacts go out
concurrently. A message is acknowledged only once its outcome is recorded: delivered (wamid kept,
so a redelivered entry is not sent again) or failed for good (Meta's code kept). A temporary failure
that outlived the client's own retries stays pending and is claimed again after
`visibility_ms` by whichever sender is alive, this one or another.
In sandbox mode the transport sends nothing and the transcript says `sandbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot.db.transcript import TranscriptRepository
from bot.graph import CloudApiClient, GraphError
from bot.inbound import TRANSIENT_ERRORS
from bot.metrics import Metrics
from bot.outbound import OutboundMessage
from bot.ratelimit import RateLimiter
from bot.streams import (
    DEDUPE_TTL_SECONDS,
    OUTBOUND_GROUP,
    OUTBOUND_STREAM,
    InboundQueue,
    ensure_group,
    is_missing_stream,
    read_group,
)
from flows.events import ContactRef, SendRefused

log = logging.getLogger(__name__)

FailureHook = Callable[[OutboundMessage, GraphError], Awaitable[None]]


class Transport(Protocol):
    """Where messages go: Meta's Cloud API, or nowhere (sandbox)."""

    sandbox: bool

    async def deliver(self, body: Mapping[str, Any]) -> str | None:
        """Send `body`; return Meta's wamid (None in sandbox). Raise GraphError on failure."""
        ...


class SandboxTransport:
    """Sandbox mode: nothing leaves the machine; the message is logged and kept in transcripts."""

    sandbox = True

    async def deliver(self, body: Mapping[str, Any]) -> str | None:
        log.info("sandbox: not sent: %s", json.dumps(body, ensure_ascii=False)[:500])
        return None


class GraphTransport:
    sandbox = False

    def __init__(self, client: CloudApiClient) -> None:
        self._client = client

    async def deliver(self, body: Mapping[str, Any]) -> str | None:
        return (await self._client.send_message(body)).wamid


class RefusalReporter:
    """Meta's refusals that change consent or the window go back to the contact's stream.

    131050 (the user stopped marketing messages) becomes a ledger withdrawal and 131047 (outside
    the 24-hour window) closes the window, both in the contact's own order, by the worker.
    """

    CODES = frozenset({131050, 131047})

    def __init__(self, inbound: InboundQueue, phone_number_id: str) -> None:
        self._inbound = inbound
        self._phone_number_id = phone_number_id

    async def __call__(self, message: OutboundMessage, error: GraphError) -> None:
        if error.code not in self.CODES:
            return
        wa_id = message.meta.get("wa_id") or None
        user_id = message.meta.get("user_id") or None
        if wa_id is None and user_id is None:
            return
        await self._inbound.accept(
            [
                SendRefused(
                    event_id=f"refused:{message.message_id}:{error.code}",
                    phone_number_id=self._phone_number_id,
                    occurred_at=datetime.now(UTC),
                    contact=ContactRef(wa_id=wa_id, user_id=user_id),
                    contact_id=message.contact_id,
                    message_id=message.message_id,
                    code=int(error.code or 0),
                    category=message.category,
                )
            ]
        )


def _delivered_key(message_id: str) -> str:
    return f"optin:delivered:{message_id}"


class Sender:
    def __init__(
        self,
        redis: Redis,
        transcript: TranscriptRepository,
        transport: Transport,
        limiter: RateLimiter,
        metrics: Metrics,
        *,
        consumer: str,
        on_permanent_failure: FailureHook | None = None,
        batch: int = 100,
        visibility_ms: int = 60_000,
    ) -> None:
        self._redis = redis
        self._transcript = transcript
        self._transport = transport
        self._limiter = limiter
        self._metrics = metrics
        self._consumer = consumer
        self._on_failure = on_permanent_failure
        self._batch = batch
        self._visibility_ms = visibility_ms

    async def run(self, stop: asyncio.Event) -> None:
        await ensure_group(self._redis, OUTBOUND_STREAM, OUTBOUND_GROUP)
        last_claim = 0.0
        while not stop.is_set():
            try:
                entries: list[tuple[str, dict[str, str]]] = []
                if time.monotonic() - last_claim > self._visibility_ms / 4000:
                    last_claim = time.monotonic()
                    _, entries, *_ = await self._redis.xautoclaim(
                        OUTBOUND_STREAM,
                        OUTBOUND_GROUP,
                        self._consumer,
                        self._visibility_ms,
                        "0-0",
                        count=self._batch,
                    )
                if not entries:
                    entries = await read_group(
                        self._redis,
                        OUTBOUND_GROUP,
                        self._consumer,
                        OUTBOUND_STREAM,
                        ">",
                        count=self._batch,
                        block_ms=1000,
                    )
                if entries:
                    await self._send_batch(entries)
            except TRANSIENT_ERRORS as exc:
                log.warning("sender cannot reach Redis or the database (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
            except ResponseError as exc:
                if not is_missing_stream(exc):
                    raise
                log.warning("outbound stream or group vanished (%s); recreating it", exc)
                await ensure_group(self._redis, OUTBOUND_STREAM, OUTBOUND_GROUP)

    async def _send_batch(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        by_contact: dict[int, list[tuple[str, OutboundMessage]]] = defaultdict(list)
        for entry_id, fields in entries:
            try:
                message = OutboundMessage.decode(fields["m"])
            except (KeyError, ValueError, TypeError) as exc:
                log.error("dropping undecodable outbound entry %s: %s", entry_id, exc)
                await self._ack(entry_id)
                continue
            by_contact[message.contact_id].append((entry_id, message))

        async def send_in_order(items: list[tuple[str, OutboundMessage]]) -> None:
            for entry_id, message in items:
                await self._send_one(entry_id, message)

        await asyncio.gather(*(send_in_order(items) for items in by_contact.values()))

    async def _send_one(self, entry_id: str, message: OutboundMessage) -> None:
        if await self._redis.exists(_delivered_key(message.message_id)):
            await self._ack(entry_id)
            return
        await self._limiter.acquire()
        started = time.perf_counter()
        try:
            wamid = await self._transport.deliver(message.body)
        except GraphError as exc:
            if exc.retryable:
                self._metrics.outbound_messages.labels(result="retried").inc()
                log.warning("message %s will be retried: %s", message.message_id, exc)
                return
            self._metrics.outbound_messages.labels(result="failed").inc()
            log.warning("message %s failed for good: %s", message.message_id, exc)
            await self._transcript.mark_outbound(
                message.message_id,
                status="failed",
                error_code=exc.code,
                error_title=str(exc)[:500],
            )
            if self._on_failure is not None:
                await self._on_failure(message, exc)
            await self._ack(entry_id)
            return
        self._metrics.send_latency.observe(time.perf_counter() - started)
        result = "sandbox" if self._transport.sandbox else "sent"
        self._metrics.outbound_messages.labels(result=result).inc()
        await self._redis.set(
            _delivered_key(message.message_id), wamid or "sandbox", ex=DEDUPE_TTL_SECONDS
        )
        await self._transcript.mark_outbound(message.message_id, status=result, wamid=wamid)
        await self._ack(entry_id)

    async def _ack(self, entry_id: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.xack(OUTBOUND_STREAM, OUTBOUND_GROUP, entry_id)
        pipe.xdel(OUTBOUND_STREAM, entry_id)
        await pipe.execute()

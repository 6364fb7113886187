"""The sender loop: drains the outbound stream to the Cloud API at the number's rate.

Several senders may run at once (consumer group `senders`); the rate limit is shared through
Redis. Messages to one contact keep their order within a batch, different contacts go out
concurrently. A message is acknowledged only once its outcome is recorded: delivered (wamid kept,
so a redelivered entry is not sent again) or failed for good (Meta's code kept). Outcomes are
recorded and acknowledged a batch at a time (see `Sender._send_batch`), which is what lets one
process keep up with a thousand messages a second. A temporary failure
that outlived the client's own retries stays pending and is claimed again after
`visibility_ms` by whichever sender is alive, this one or another.
In sandbox mode the transport sends nothing and the transcript says `sandbox`; each message still
gets a wamid of its own, as Meta's answer would give it, so a customer's tap on one of its
buttons names it (Meta's `context`) and the flows can tell an old message from the open question.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot import redis_keys
from bot.db.transcript import OutboundMark, TranscriptRepository
from bot.graph import CloudApiClient, GraphError
from bot.metrics import Metrics
from bot.outbound import OutboundMessage
from bot.ratelimit import RateLimiter, sleep_until
from bot.send_guard import SANDBOX_OUTCOME
from bot.streams import (
    DEDUPE_TTL_SECONDS,
    OUTBOUND_GROUP,
    OUTBOUND_STREAM,
    InboundQueue,
    ensure_group,
    is_missing_stream,
    read_group,
)
from bot.transient import TRANSIENT_ERRORS
from flows.events import ContactRef, SendRefused

log = logging.getLogger(__name__)

FailureHook = Callable[[OutboundMessage, GraphError], Awaitable[None]]


class Transport(Protocol):
    """Where messages go: Meta's Cloud API, or nowhere (sandbox)."""

    sandbox: bool

    async def deliver(self, body: Mapping[str, Any]) -> str | None:
        """Send `body`; return its wamid (Meta's `messages[0].id`, or the sandbox's own), or
        None when only an earlier sandbox run's marker is known. Raise GraphError on failure."""
        ...


SANDBOX_WAMID_PREFIX = "wamid.SANDBOX-OUT-"


def sandbox_wamid() -> str:
    """A wamid for a message the sandbox kept instead of sending: unique, like Meta's, and
    recognisable in logs and transcripts as never having reached WhatsApp."""
    return SANDBOX_WAMID_PREFIX + secrets.token_hex(16).upper()


class SandboxTransport:
    """Sandbox mode: nothing leaves the machine; the message is logged and kept in transcripts.

    It answers with a fresh wamid, as the Cloud API's `messages[0].id` does: the transcript
    records it, the sandbox page puts it as the `context` of the message's buttons, and a tap on
    an old message's button is then told apart from an answer to the open question, exactly as
    it is with Meta.
    """

    sandbox = True

    async def deliver(self, body: Mapping[str, Any]) -> str | None:
        wamid = sandbox_wamid()
        log.info("sandbox: not sent (%s): %s", wamid, json.dumps(body, ensure_ascii=False)[:500])
        return wamid


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


BATCHES_IN_FLIGHT = 2
"""Batches being sent at once: the next one's slots are reserved before this one ends."""


def _delivered_key(message_id: str) -> str:
    return redis_keys.DELIVERED.format(message_id=message_id)


def _marker_wamid(value: bytes | str) -> str | None:
    """The wamid a delivered marker holds; None for the wamid-less marker an earlier version
    wrote for a sandbox message."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    return None if text == SANDBOX_OUTCOME else text


class Sender:
    """The sender loop of one process.

    `max_concurrent_sends` bounds the HTTP requests in flight (a slow Graph API makes sends
    overlap): each may use a Redis connection through the transport's guards, and the Redis
    client's pool is finite (100 connections by default), so without a bound a slow spell would
    end in "Too many connections" instead of in sends that wait their turn.
    """

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
        max_concurrent_sends: int = 32,
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
        self._tails: dict[int, asyncio.Task[None]] = {}
        self._sending = asyncio.Semaphore(max_concurrent_sends)

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop`. Redis or the database failing (a dropped connection while a batch
        is recorded) ends the run with that error, after the batches in flight: the supervisor
        (`bot.supervisor`, as `bot.roles` runs it) counts the restart and runs it again after a
        short backoff, and the batch's entries, still pending, come round again (delivered
        markers keep them from a second send)."""
        await ensure_group(self._redis, OUTBOUND_STREAM, OUTBOUND_GROUP)
        last_claim = 0.0
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                try:
                    await self._make_room(in_flight)
                    entries: list[tuple[str, dict[str, str]]] = []
                    count = self._batch_size()
                    if time.monotonic() - last_claim > self._visibility_ms / 4000:
                        last_claim = time.monotonic()
                        _, entries, *_ = await self._redis.xautoclaim(
                            OUTBOUND_STREAM,
                            OUTBOUND_GROUP,
                            self._consumer,
                            self._visibility_ms,
                            "0-0",
                            count=count,
                        )
                    if not entries:
                        entries = await read_group(
                            self._redis,
                            OUTBOUND_GROUP,
                            self._consumer,
                            OUTBOUND_STREAM,
                            ">",
                            count=count,
                            block_ms=1000,
                            stop=stop,
                        )
                    if entries:
                        in_flight.add(await self._start_batch(entries))
                except ResponseError as exc:
                    if not is_missing_stream(exc):
                        raise
                    log.warning("outbound stream or group vanished (%s); recreating it", exc)
                    await ensure_group(self._redis, OUTBOUND_STREAM, OUTBOUND_GROUP)
        finally:
            await asyncio.gather(*in_flight, return_exceptions=True)

    def _batch_size(self) -> int:
        """At most `batch` entries and half a second of sending: a batch's outcomes are
        recorded when it ends, so a slow number does not leave them unrecorded for long."""
        return max(1, min(self._batch, int(self._limiter.rate / 2)))

    @staticmethod
    async def _make_room(in_flight: set[asyncio.Task[None]]) -> None:
        """Wait until fewer than `BATCHES_IN_FLIGHT` batches are in flight; a batch that
        failed raises its error here, for `run` to handle as if it were its own."""
        while True:
            for task in [t for t in in_flight if t.done()]:
                in_flight.discard(task)
                task.result()
            if len(in_flight) < BATCHES_IN_FLIGHT:
                return
            await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)

    async def _send_batch(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Send a batch, record its outcomes and acknowledge it (see `_start_batch`)."""
        await (await self._start_batch(entries))

    async def _start_batch(self, entries: list[tuple[str, dict[str, str]]]) -> asyncio.Task[None]:
        """Reserve a batch's rate slots and start sending it; the task records its outcomes
        and then acknowledges it, in that order.

        Per batch, not per message: one pipelined look-up of what was delivered already, one
        rate-limit reservation (each message still waits for its own slot), and at the end one
        pipelined write of the delivered markers, one transcript transaction and one
        acknowledgement, so an entry is never acknowledged before its outcome is recorded. A
        crash before the end loses only records: the batch comes round again, messages already
        marked delivered are acknowledged without a second send, the others (their HTTP requests
        may have gone out) are sent again, except those tagged with our message id (every
        template), which `bot.send_guard` keeps at most once.

        The next batch is read and its slots reserved while this one is sent (`run` keeps two
        in flight), so no slot is lost between batches; a contact's messages still go out in
        order, each after the contact's previous one (`_tails`), whichever batch it was in.
        """
        done: list[str] = []
        decoded: list[tuple[str, OutboundMessage]] = []
        for entry_id, fields in entries:
            try:
                decoded.append((entry_id, OutboundMessage.decode(fields["m"])))
            except (KeyError, ValueError, TypeError) as exc:
                log.error("dropping undecodable outbound entry %s: %s", entry_id, exc)
                done.append(entry_id)
        outcomes = _Outcomes()
        to_send: list[tuple[str, OutboundMessage]] = []
        if decoded:
            known = await self._redis.mget([_delivered_key(m.message_id) for _, m in decoded])
            for (entry_id, message), wamid in zip(decoded, known, strict=True):
                if wamid is None:
                    to_send.append((entry_id, message))
                else:  # sent before, its record or acknowledgement lost: record it again
                    outcomes.delivered(
                        entry_id, message, _marker_wamid(wamid), sandbox=self._transport.sandbox
                    )
        due = await self._limiter.reserve(len(to_send))
        by_contact: dict[int, list[tuple[float, str, OutboundMessage]]] = defaultdict(list)
        for slot, (entry_id, message) in zip(due, to_send, strict=True):
            by_contact[message.contact_id].append((slot, entry_id, message))
        sends = [
            self._chain(contact_id, items, outcomes) for contact_id, items in by_contact.items()
        ]

        async def finish() -> None:
            await asyncio.gather(*sends)
            await self._record(outcomes)
            await self._ack([*done, *outcomes.entry_ids])

        return asyncio.create_task(finish(), name="sender-batch")

    def _chain(
        self,
        contact_id: int,
        items: list[tuple[float, str, OutboundMessage]],
        outcomes: _Outcomes,
    ) -> asyncio.Task[None]:
        """Send a contact's messages of one batch after the contact's earlier ones."""
        task = asyncio.create_task(
            self._send_in_order(self._tails.get(contact_id), items, outcomes)
        )
        self._tails[contact_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tails.get(contact_id) is done:
                del self._tails[contact_id]

        task.add_done_callback(forget)
        return task

    async def _send_in_order(
        self,
        previous: asyncio.Task[None] | None,
        items: list[tuple[float, str, OutboundMessage]],
        outcomes: _Outcomes,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # its outcome is its own batch's business
        for slot, entry_id, message in items:
            await sleep_until(slot)
            async with self._sending:
                await self._send_one(entry_id, message, outcomes)

    async def _send_one(self, entry_id: str, message: OutboundMessage, outcomes: _Outcomes) -> None:
        started = time.perf_counter()
        try:
            wamid = await self._transport.deliver(message.body)
        except TRANSIENT_ERRORS as exc:
            # The transport's own Redis (an at-most-once guard) failed: the outcome is unknown
            # and stays so until the entry comes round again; the batch's others are recorded.
            self._metrics.outbound_messages.labels(result="retried").inc()
            log.warning("message %s will be retried: %r", message.message_id, exc)
            return
        except GraphError as exc:
            if exc.retryable:
                self._metrics.outbound_messages.labels(result="retried").inc()
                log.warning("message %s will be retried: %s", message.message_id, exc)
                return
            self._metrics.outbound_messages.labels(result="failed").inc()
            log.warning("message %s failed for good: %s", message.message_id, exc)
            outcomes.failed(entry_id, message, exc)
            return
        self._metrics.send_latency.observe(time.perf_counter() - started)
        result = "sandbox" if self._transport.sandbox else "sent"
        self._metrics.outbound_messages.labels(result=result).inc()
        outcomes.delivered(entry_id, message, wamid, sandbox=self._transport.sandbox)

    async def _record(self, outcomes: _Outcomes) -> None:
        """Delivered markers first (so a redelivered entry is not sent again), then the
        transcript, then the failure hooks."""
        if outcomes.wamids:
            pipe = self._redis.pipeline(transaction=False)
            for message_id, wamid in outcomes.wamids.items():
                marker = wamid if wamid is not None else SANDBOX_OUTCOME
                pipe.set(_delivered_key(message_id), marker, ex=DEDUPE_TTL_SECONDS)
            await pipe.execute()
        await self._transcript.mark_outbound_many(outcomes.marks)
        if self._on_failure is not None:
            for message, error in outcomes.failures:
                await self._on_failure(message, error)

    async def _ack(self, entry_ids: list[str]) -> None:
        if not entry_ids:
            return
        pipe = self._redis.pipeline(transaction=True)
        pipe.xack(OUTBOUND_STREAM, OUTBOUND_GROUP, *entry_ids)
        pipe.xdel(OUTBOUND_STREAM, *entry_ids)
        await pipe.execute()


class _Outcomes:
    """What became of a batch's messages, recorded together at the end of the batch."""

    def __init__(self) -> None:
        self.entry_ids: list[str] = []
        self.marks: list[OutboundMark] = []
        self.wamids: dict[str, str | None] = {}
        self.failures: list[tuple[OutboundMessage, GraphError]] = []

    def delivered(
        self, entry_id: str, message: OutboundMessage, wamid: str | None, *, sandbox: bool
    ) -> None:
        """Accepted by Meta (`wamid`), or kept in the sandbox (under the sandbox's own wamid;
        None only when an earlier version's marker says it was kept without one)."""
        self.entry_ids.append(entry_id)
        self.wamids[message.message_id] = wamid
        status = "sandbox" if sandbox else "sent"
        self.marks.append(OutboundMark(message.message_id, status=status, wamid=wamid))

    def failed(self, entry_id: str, message: OutboundMessage, error: GraphError) -> None:
        self.entry_ids.append(entry_id)
        self.marks.append(
            OutboundMark(
                message.message_id,
                status="failed",
                error_code=error.code,
                error_title=str(error)[:500],
            )
        )
        self.failures.append((message, error))

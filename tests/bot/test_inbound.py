"""The inbound worker: per-contact order across workers, parallel contacts, crash recovery,
retries that hold a contact's later events back, and the dead-letter stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from sqlalchemy.exc import OperationalError

from bot.eventcodec import encode_event
from bot.inbound import InboundWorker
from bot.streams import (
    DEAD_LETTER_STREAM,
    INBOUND_GROUP,
    InboundQueue,
    add_dead_letter,
    ensure_group,
    inbound_stream,
    read_group,
    shard_of,
)
from flows.events import ContactRef, Event, TextMessage
from tests.fakes.webhooks import eventually

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def text(wa_id: str, n: int) -> TextMessage:
    return TextMessage(
        event_id=f"msg:wamid.{wa_id}.{n}",
        phone_number_id="1",
        occurred_at=NOW,
        contact=ContactRef(wa_id=wa_id, user_id=None),
        wamid=f"wamid.{wa_id}.{n}",
        body=str(n),
    )


class Recorder:
    """A handler that records order and catches two events of one contact at the same time."""

    def __init__(self, delay: float = 0.0) -> None:
        self.seen: dict[str, list[int]] = defaultdict(list)
        self.busy: set[str] = set()
        self.overlaps = 0
        self.max_parallel = 0
        self.delay = delay

    async def __call__(self, event: Event) -> None:
        assert isinstance(event, TextMessage) and event.contact is not None
        key = event.contact.key
        if key in self.busy:
            self.overlaps += 1
        self.busy.add(key)
        self.max_parallel = max(self.max_parallel, len(self.busy))
        await asyncio.sleep(self.delay)
        self.seen[key].append(int(event.body))
        self.busy.discard(key)

    def total(self) -> int:
        return sum(len(v) for v in self.seen.values())


@contextlib.asynccontextmanager
async def running(*workers: InboundWorker) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_two_workers_keep_each_contacts_order(redis_client: Redis) -> None:
    recorder = Recorder(delay=0.001)
    workers = [
        InboundWorker(redis_client, recorder, consumer=f"w{i}", lease_ms=600) for i in range(2)
    ]
    contacts = [f"1555000{i:04d}" for i in range(40)]
    queue = InboundQueue(redis_client)
    async with running(*workers):
        for n in range(10):
            await queue.accept([text(c, n) for c in contacts])

        async def done() -> bool:
            return recorder.total() == 400

        await eventually(done, within=30)
    assert recorder.overlaps == 0
    assert all(recorder.seen[f"wa:{c}"] == list(range(10)) for c in contacts)
    assert recorder.max_parallel > 1, "different contacts must run in parallel"
    for shard in range(16):
        assert await redis_client.xlen(inbound_stream(shard)) == 0


async def test_stop_ends_workers_blocked_on_empty_streams_without_waiting_out_the_block(
    redis_client: Redis,
) -> None:
    """Regression: each shard's consumer sat in a one-second blocking read, so every shutdown
    (every SIGTERM, every test's app) waited up to a second after `stop` for the reads to time
    out. The reads are now given up as soon as `stop` is set."""
    worker = InboundWorker(redis_client, Recorder(), consumer="w", lease_ms=15_000)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def owns_every_shard() -> bool:
        return len(worker.owned_shards) == 16

    await eventually(owns_every_shard)
    await asyncio.sleep(0.1)  # every consumer is inside its blocking read now
    started = asyncio.get_running_loop().time()
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert asyncio.get_running_loop().time() - started < 0.5


async def test_a_read_after_stop_takes_nothing(redis_client: Redis) -> None:
    """`read_group` with `stop` already set sends no read, so no entry is left pending on a
    consumer that is going away."""
    wa_id = "15550003333"
    stream = inbound_stream(shard_of(f"wa:{wa_id}"))
    await ensure_group(redis_client, stream, INBOUND_GROUP)
    await InboundQueue(redis_client).accept([text(wa_id, 1)])
    stop = asyncio.Event()
    stop.set()
    read = read_group(
        redis_client, INBOUND_GROUP, "w", stream, ">", count=10, block_ms=1000, stop=stop
    )
    assert await read == []
    assert (await redis_client.xpending(stream, INBOUND_GROUP))["pending"] == 0
    assert await read_group(redis_client, INBOUND_GROUP, "w", stream, ">", count=10, block_ms=1000)


async def test_duplicates_are_dropped_at_the_door(redis_client: Redis) -> None:
    queue = InboundQueue(redis_client)
    first = await queue.accept([text("15550001111", 1), text("15550001111", 2)])
    again = await queue.accept([text("15550001111", 2), text("15550001111", 3)])
    assert (first.queued, first.duplicates) == (2, 0)
    assert (again.queued, again.duplicates) == (1, 1)


async def test_a_dead_workers_entries_are_adopted_in_order(redis_client: Redis) -> None:
    queue = InboundQueue(redis_client)
    wa_id = "15550002222"
    stream = inbound_stream(shard_of(f"wa:{wa_id}"))
    await ensure_group(redis_client, stream, INBOUND_GROUP)
    await queue.accept([text(wa_id, n) for n in range(5)])
    # A worker read three entries and died before acknowledging them (its lease ran out).
    await redis_client.xreadgroup(INBOUND_GROUP, "dead-worker", {stream: ">"}, count=3)
    recorder = Recorder()
    async with running(InboundWorker(redis_client, recorder, consumer="heir", lease_ms=600)):

        async def all_done() -> bool:
            return recorder.total() == 5

        await eventually(all_done)
    assert recorder.seen[f"wa:{wa_id}"] == [0, 1, 2, 3, 4]
    assert (await redis_client.xpending(stream, INBOUND_GROUP))["pending"] == 0


async def test_transient_failures_hold_the_contact_back_until_they_pass(
    redis_client: Redis,
) -> None:
    order: list[int] = []
    failures = {"left": 3}

    async def flaky(event: Event) -> None:
        assert isinstance(event, TextMessage)
        if event.body == "0" and failures["left"]:
            failures["left"] -= 1
            raise OperationalError("SELECT 1", {}, ConnectionError("database down"))
        order.append(int(event.body))

    queue = InboundQueue(redis_client)
    await queue.accept([text("15550003333", n) for n in range(3)])
    worker = InboundWorker(redis_client, flaky, consumer="w", lease_ms=600, retry_cap_seconds=0.05)
    async with running(worker):

        async def all_done() -> bool:
            return len(order) == 3

        await eventually(all_done)
    assert order == [0, 1, 2]


async def test_a_poisoned_event_goes_to_the_dead_letter_stream(redis_client: Redis) -> None:
    handled: list[int] = []

    async def buggy(event: Event) -> None:
        assert isinstance(event, TextMessage)
        if event.body == "1":
            raise ValueError("a bug in a handler")
        handled.append(int(event.body))

    queue = InboundQueue(redis_client)
    await queue.accept([text("15550004444", n) for n in range(3)])
    worker = InboundWorker(redis_client, buggy, consumer="w", lease_ms=600, retry_cap_seconds=0.01)
    async with running(worker):

        async def rest_done() -> bool:
            return len(handled) == 2

        await eventually(rest_done)
    assert handled == [0, 2]
    dead = await redis_client.xrange(DEAD_LETTER_STREAM)
    assert len(dead) == 1 and "a bug in a handler" in dead[0][1]["error"]


@pytest.mark.parametrize("workers", [1, 3])
async def test_workers_split_the_shards(redis_client: Redis, workers: int) -> None:
    async def nothing(event: Event) -> None:
        return None

    pool = [
        InboundWorker(redis_client, nothing, consumer=f"w{i}", lease_ms=450) for i in range(workers)
    ]
    async with running(*pool):

        async def balanced() -> bool:
            owned = [w.owned_shards for w in pool]
            union = frozenset().union(*owned)
            return (
                len(union) == 16
                and sum(len(o) for o in owned) == 16
                and all(len(o) <= -(-16 // workers) for o in owned)
            )

        await eventually(balanced, within=15)


async def test_the_full_dead_letter_stream_says_what_it_trims(
    redis_client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression (issue 9, item 9): the dead-letter stream was capped with XADD MAXLEN ~, which
    dropped the oldest dead events (~100k) without a word. Now the exact excess is trimmed,
    logged at ERROR with its entry and event ids, and counted in a metric."""
    import logging

    from bot.metrics import Metrics

    async def buggy(event: Event) -> None:
        raise ValueError("a bug in a handler")

    metrics = Metrics()
    queue = InboundQueue(redis_client)
    await queue.accept([text("15550005555", n) for n in range(5)])
    worker = InboundWorker(
        redis_client,
        buggy,
        consumer="w",
        lease_ms=600,
        retry_cap_seconds=0.001,
        metrics=metrics,
        dead_letter_maxlen=3,
    )
    caplog.set_level(logging.ERROR, logger="bot.inbound")
    async with running(worker):

        async def all_dead() -> bool:
            return metrics.dead_letters_trimmed.labels(stream=DEAD_LETTER_STREAM)._value.get() == 2

        await eventually(all_dead)
    dead = await redis_client.xrange(DEAD_LETTER_STREAM)
    assert [fields["e"] for _, fields in dead] == [
        encode_event(text("15550005555", n)) for n in (2, 3, 4)
    ]
    trimmed = [r.getMessage() for r in caplog.records if "trimmed" in r.getMessage()]
    assert len(trimmed) == 2
    assert all(r.levelno == logging.ERROR for r in caplog.records if "trimmed" in r.getMessage())
    assert "msg:wamid.15550005555.0" in trimmed[0] and "msg:wamid.15550005555.1" in trimmed[1]
    assert metrics.dead_letters_trimmed.labels(stream=DEAD_LETTER_STREAM)._value.get() == 2


async def test_add_dead_letter_trims_exactly_the_oldest_beyond_the_cap(
    redis_client: Redis,
) -> None:
    ids = []
    for n in range(4):
        added, trimmed = await add_dead_letter(
            redis_client, {"error": f"e{n}", "e": f"event {n}"}, maxlen=2
        )
        ids.append(added)
        assert [t.entry_id for t in trimmed] == ([ids[n - 2]] if n >= 2 else [])
        assert [t.event for t in trimmed] == ([f"event {n - 2}"] if n >= 2 else [])
    assert [entry_id for entry_id, _ in await redis_client.xrange(DEAD_LETTER_STREAM)] == ids[2:]

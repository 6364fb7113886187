"""The CRM deliverer against a recording receiver: order per contact, retries, give-ups, pauses
and restarts, on the embedded and the real Redis."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
from redis.asyncio import Redis

from bot.crm.attempt import RetryPolicy
from bot.crm.deliverer import LEASE_PREFIX
from bot.crm.log import DeadReason, DeliveryLog, DeliveryStatus
from bot.crm.outbox import CRM_DEAD_STREAM, CrmOutbox, crm_shard, crm_stream, queued_events
from bot.crm.pause import PAUSE_KEY, Pause, current_pause, encode_pause, resume, url_digest
from bot.metrics import Metrics
from tests.bot.crm.conftest import LEASE_MS, crm_event, other_shard_contact, running, sample
from tests.fakes.receiver import FakeReceiver
from tests.fakes.webhooks import eventually

A = 1
B = other_shard_contact(A)


async def test_a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt_in_order(
    redis_client: Redis, http: aiohttp.ClientSession, receiver: FakeReceiver
) -> None:
    outbox = CrmOutbox(redis_client)
    receiver.script("consent:1", 500, headers={"Retry-After": "1"})
    receiver.script("consent:1", 503)
    assert await outbox.enqueue([crm_event("consent:1", A), crm_event("consent:2", A)]) == 2
    assert await outbox.enqueue([crm_event("consent:3", B)]) == 1
    metrics = Metrics()

    async with running(redis_client, http, receiver.url, metrics=metrics):

        async def all_delivered() -> bool:
            return len(receiver.delivered()) == 3

        await eventually(all_delivered)

    first = receiver.attempts_of("consent:1")
    assert [(r.status, r.attempt) for r in first] == [(500, 1), (503, 2), (200, 3)]
    assert first[1].received_at - first[0].received_at >= 0.95  # Retry-After honoured
    # In order for contact A: consent:2 was not even tried before consent:1 got through ...
    assert [r.event_id for r in receiver.requests if r.event_id != "consent:3"] == [
        "consent:1",
        "consent:1",
        "consent:1",
        "consent:2",
    ]
    # ... while contact B, on another shard, did not wait for A.
    assert receiver.delivered_ids().index("consent:3") < receiver.delivered_ids().index("consent:1")
    assert sorted(receiver.delivered_ids()) == ["consent:1", "consent:2", "consent:3"]
    assert all(r.signature_valid for r in receiver.requests)
    assert first[0].json == {
        "id": "consent:1",
        "type": "consent.changed",
        "contact": {"id": A},
    }

    logged = await DeliveryLog(redis_client).get("consent:1")
    assert logged is not None
    assert (logged.status, logged.attempts, logged.last_status_code) == (
        DeliveryStatus.DELIVERED,
        3,
        200,
    )
    assert logged.first_attempt_at and logged.finished_at and logged.next_attempt_at is None
    assert await queued_events(redis_client) == 0
    assert (sample(metrics, "delivered"), sample(metrics, "retried")) == (3.0, 2.0)


async def test_a_refused_event_is_dead_and_the_next_one_follows(
    redis_client: Redis, http: aiohttp.ClientSession, receiver: FakeReceiver
) -> None:
    receiver.script("consent:1", 400)
    await CrmOutbox(redis_client).enqueue([crm_event("consent:1", A), crm_event("consent:2", A)])

    async with running(redis_client, http, receiver.url):

        async def next_delivered() -> bool:
            return receiver.delivered_ids() == ["consent:2"]

        await eventually(next_delivered)

    log = DeliveryLog(redis_client)
    dead = await log.get("consent:1")
    assert dead is not None
    assert (dead.status, dead.dead_reason, dead.attempts, dead.last_status_code) == (
        DeliveryStatus.DEAD,
        DeadReason.REJECTED,
        1,
        400,
    )
    assert dead.last_error is not None and dead.last_error.startswith("HTTP 400")
    letters: Any = await redis_client.xrange(CRM_DEAD_STREAM)
    ((_, letter),) = letters
    assert (letter["id"], letter["reason"], letter["status_code"]) == (
        "consent:1",
        "rejected",
        "400",
    )
    assert '"consent:1"' in letter["body"]


async def test_410_gone_stops_delivery_until_resumed(
    redis_client: Redis, http: aiohttp.ClientSession, receiver: FakeReceiver
) -> None:
    outbox = CrmOutbox(redis_client)
    receiver.script("consent:1", 410)
    await outbox.enqueue([crm_event("consent:1", A)])

    async with running(redis_client, http, receiver.url):

        async def paused() -> Pause | None:
            return await current_pause(redis_client)

        pause = await eventually(paused)
        assert pause.event_id == "consent:1" and pause.url_digest == url_digest(receiver.url)
        dead = await DeliveryLog(redis_client).get("consent:1")
        assert dead is not None and dead.dead_reason is DeadReason.GONE

        await outbox.enqueue([crm_event("consent:2", A)])
        await outbox.enqueue([crm_event("consent:3", B)])
        await asyncio.sleep(1.0)
        assert receiver.delivered_ids() == []  # nobody posts to a receiver that is gone
        assert await queued_events(redis_client) == 2

        assert await resume(redis_client) is True

        async def delivered() -> bool:
            return sorted(receiver.delivered_ids()) == ["consent:2", "consent:3"]

        await eventually(delivered)
    assert [r.event_id for r in receiver.requests].count("consent:1") == 1


async def test_a_new_receiver_url_lifts_a_pause_for_the_old_one(
    redis_client: Redis, http: aiohttp.ClientSession, receiver: FakeReceiver
) -> None:
    await redis_client.set(
        PAUSE_KEY, encode_pause(Pause(url_digest("https://old"), "consent:9", 1))
    )
    await CrmOutbox(redis_client).enqueue([crm_event("consent:1", A)])
    async with running(redis_client, http, receiver.url):

        async def delivered() -> bool:
            return receiver.delivered_ids() == ["consent:1"]

        await eventually(delivered)
    assert await current_pause(redis_client) is None


async def test_a_restart_in_the_middle_of_retrying_delivers_exactly_once(
    redis_client: Redis, http: aiohttp.ClientSession, receiver: FakeReceiver
) -> None:
    receiver.script("consent:1", 500, headers={"Retry-After": "1"})
    await CrmOutbox(redis_client).enqueue([crm_event("consent:1", A), crm_event("consent:2", A)])
    log = DeliveryLog(redis_client)

    async with running(redis_client, http, receiver.url, consumer="first") as task:

        async def failed_once() -> bool:
            logged = await log.get("consent:1")
            return logged is not None and logged.status is DeliveryStatus.FAILED

        await eventually(failed_once)
        task.cancel()  # the process goes away while the event waits for its retry
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async with running(redis_client, http, receiver.url, consumer="second"):

        async def both_delivered() -> bool:
            return receiver.delivered_ids() == ["consent:1", "consent:2"]

        await eventually(both_delivered)

    attempts = receiver.attempts_of("consent:1")
    assert [(r.status, r.attempt) for r in attempts] == [(500, 1), (200, 2)]
    # The replacement kept the backoff the first deliverer had decided.
    assert attempts[1].received_at - attempts[0].received_at >= 0.95
    assert len(receiver.attempts_of("consent:2")) == 1


async def test_a_crashed_owner_s_shard_is_taken_over_when_its_lease_expires(
    redis_client: Redis, http: aiohttp.ClientSession, receiver: FakeReceiver
) -> None:
    # A deliverer died holding the shard (no chance to release its lease).
    await redis_client.set(f"{LEASE_PREFIX}:{crm_shard(A)}", "dead-process", px=LEASE_MS * 2)
    await CrmOutbox(redis_client).enqueue([crm_event("consent:1", A)])
    async with running(redis_client, http, receiver.url, consumer="survivor"):

        async def delivered() -> bool:
            return receiver.delivered_ids() == ["consent:1"]

        await eventually(delivered)


async def test_an_event_still_failing_after_the_retry_window_is_given_up(
    redis_client: Redis, http: aiohttp.ClientSession, receiver: FakeReceiver
) -> None:
    receiver.default_status = 503
    policy = RetryPolicy(base_delay=0.05, max_delay=0.1, give_up_after=0.6)
    metrics = Metrics()
    await CrmOutbox(redis_client).enqueue([crm_event("consent:1", A)])
    log = DeliveryLog(redis_client)
    async with running(redis_client, http, receiver.url, policy=policy, metrics=metrics):

        async def given_up() -> bool:
            logged = await log.get("consent:1")
            return logged is not None and logged.status is DeliveryStatus.DEAD

        await eventually(given_up)
    logged = await log.get("consent:1")
    assert logged is not None and logged.dead_reason is DeadReason.EXPIRED
    assert logged.attempts >= 3 and logged.attempts == len(receiver.requests)
    assert logged.enqueued_at is not None and logged.finished_at is not None
    assert logged.finished_at - logged.enqueued_at >= 600  # the whole window, not less
    assert sample(metrics, "expired") == 1.0


async def test_an_unreachable_receiver_is_retried_with_the_error_logged(
    redis_client: Redis, http: aiohttp.ClientSession
) -> None:
    async with FakeReceiver() as closed:
        url = closed.url  # nothing listens there any more once the block ends
    await CrmOutbox(redis_client).enqueue([crm_event("consent:1", A)])
    log = DeliveryLog(redis_client)
    async with running(redis_client, http, url):

        async def retried() -> bool:
            logged = await log.get("consent:1")
            return logged is not None and logged.attempts >= 2

        await eventually(retried)
    logged = await log.get("consent:1")
    assert logged is not None and logged.status is DeliveryStatus.FAILED
    assert logged.last_status_code is None and logged.last_error
    assert await queued_events(redis_client) == 1  # still queued, for the next deliverer


async def test_a_re_announced_event_is_queued_and_delivered_once(
    redis_client: Redis, http: aiohttp.ClientSession, receiver: FakeReceiver
) -> None:
    outbox = CrmOutbox(redis_client)
    assert await outbox.enqueue([crm_event("consent:1", A)]) == 1
    assert await outbox.enqueue([crm_event("consent:1", A), crm_event("consent:2", A)]) == 1
    assert await redis_client.xlen(crm_stream(crm_shard(A))) == 2
    async with running(redis_client, http, receiver.url):

        async def delivered() -> bool:
            return receiver.delivered_ids() == ["consent:1", "consent:2"]

        await eventually(delivered)
    assert await outbox.enqueue([crm_event("consent:1", A)]) == 0  # delivered already
    await asyncio.sleep(0.3)
    assert receiver.delivered_ids() == ["consent:1", "consent:2"]


async def test_a_full_dead_letter_stream_says_what_it_trims(
    redis_client: Redis,
    http: aiohttp.ClientSession,
    receiver: FakeReceiver,
    monkeypatch: Any,
    caplog: Any,
) -> None:
    """Given-up CRM events are dead events too: the stream was capped with XADD MAXLEN ~,
    dropping the oldest without a word; now the excess is logged at ERROR and counted."""
    import logging

    import bot.crm.deliverer

    monkeypatch.setattr(bot.crm.deliverer, "DEAD_MAXLEN", 2)
    for n in (1, 2):
        await redis_client.xadd(CRM_DEAD_STREAM, {"id": f"old:{n}", "reason": "rejected"})
    receiver.script("consent:1", 400)
    await CrmOutbox(redis_client).enqueue([crm_event("consent:1", A)])
    metrics = Metrics()
    caplog.set_level(logging.ERROR, logger="bot.crm.deliverer")

    async with running(redis_client, http, receiver.url, metrics=metrics):

        async def trimmed() -> bool:
            counter = metrics.dead_letters_trimmed.labels(stream=CRM_DEAD_STREAM)
            return bool(counter._value.get() == 1)

        await eventually(trimmed)

    letters: Any = await redis_client.xrange(CRM_DEAD_STREAM)
    assert [fields["id"] for _, fields in letters] == ["old:2", "consent:1"]
    (record,) = [r for r in caplog.records if "trimmed" in r.getMessage()]
    assert record.levelno == logging.ERROR and "old:1" in record.getMessage()

"""The dispatcher's pace under Meta's 130429 and its daily cap across UTC midnight.

Real PostgreSQL and Redis, the dispatcher alone (no sender): what it queues on the outbound
stream is what it dispatched, and the stream's entry ids say when (Redis server time).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.campaigns import throttle as throttle_module
from bot.campaigns.dispatcher import CampaignDispatcher, DispatchContext, next_utc_midnight
from bot.campaigns.repository import CampaignRepository
from bot.campaigns.send_guard import CampaignTransport, SentMarks
from bot.campaigns.service import CampaignService
from bot.campaigns.throttle import Throttle, effective_rate
from bot.db.engine import create_engine, session_factory
from bot.db.transcript import TranscriptRepository
from bot.graph import GraphError
from bot.outbound import OutboundMessage, OutboundQueue
from bot.redisconn import connect_redis
from bot.streams import OUTBOUND_STREAM, InboundQueue
from tests.fakes.consent_seed import seed_opted_in
from tests.fakes.webhooks import eventually

pytestmark = [pytest.mark.services]

PHONE = "106540352242922"
OLD = datetime.now(UTC) - timedelta(days=400)


class Clock:
    """A settable clock for the dispatcher (its `DispatchContext.clock`)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Bench:
    engine: Any
    redis: Redis
    service: CampaignService
    throttle: Throttle

    def dispatcher(self, clock: Callable[[], datetime]) -> CampaignDispatcher:
        sessions = session_factory(self.engine)
        transcript = TranscriptRepository(sessions)
        context = DispatchContext(
            repository=self.service.repository,
            transcript=transcript,
            redis=self.redis,
            inbound=InboundQueue(self.redis),
            outbound=OutboundQueue(self.redis, transcript),
            throttle=self.throttle,
            business_name="Acme",
            phone_number_id=PHONE,
            clock=clock,
        )
        return CampaignDispatcher(context, consumer="test", poll_interval=0.05)

    async def start(self, count: int, **fields: Any) -> int:
        await seed_opted_in(self.engine, count, since=OLD)
        created = await self.service.create(
            {
                "name": "pacing",
                "template": {"name": "reconsent_v2", "language": "en_US"},
                "audience": {"categories": ["marketing"], "older_than_days": 365},
                "policy_version": "2",
                "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
                **fields,
            }
        )
        campaign_id = created.campaign.id
        assert campaign_id is not None
        await self.service.act(campaign_id, "start")
        return campaign_id

    async def queued(self) -> int:
        return int(await self.redis.xlen(OUTBOUND_STREAM))

    async def rate_over(self, seconds: float) -> float:
        """Messages queued per second over the next `seconds` (by the entries' Redis time)."""
        started_ms = await self._server_ms()
        await asyncio.sleep(seconds)
        ended_ms = await self._server_ms()
        entries = await self.redis.xrange(OUTBOUND_STREAM, min=str(started_ms), max=str(ended_ms))
        return len(entries) / ((ended_ms - started_ms) / 1000)

    async def _server_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000


@pytest.fixture
async def bench(real_stack_urls: tuple[str, str]) -> AsyncIterator[Bench]:
    database_url, redis_url = real_stack_urls
    engine = create_engine(database_url)
    redis = connect_redis(redis_url)
    await redis.flushdb()
    throttle = Throttle(redis, PHONE)
    service = CampaignService(
        CampaignRepository(session_factory(engine)),
        throttle,
        categories=["marketing", "order_updates", "reminders", "account_alerts"],
        default_optout_threshold=0.02,
    )
    try:
        yield Bench(engine, redis, service, throttle)
    finally:
        await redis.flushdb()
        await redis.aclose()
        await engine.dispose()


@contextlib.asynccontextmanager
async def running(dispatcher: CampaignDispatcher) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


class Refusing:
    """Meta's side of a send: always 130429 (throughput)."""

    sandbox = False

    async def deliver(self, body: Any) -> str | None:
        raise GraphError(
            "(#130429) Rate limit hit", code=130429, http_status=400, title="Rate limit hit"
        )


async def test_130429_halves_the_campaign_pace_and_a_quiet_window_restores_it(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Meta refusing for throughput (reported by the sender's campaign transport) slows every
    campaign of the number: each debounced report halves the pace; a window without reports
    restores the configured rate. The window and debounce are shortened to fit a test."""
    monkeypatch.setattr(throttle_module, "WINDOW_SECONDS", 3)
    monkeypatch.setattr(throttle_module, "DEBOUNCE_SECONDS", 1)
    rate = 50.0
    campaign_id = await bench.start(2500, rate=rate)
    marks = SentMarks(bench.service.repository, lambda: datetime.now(UTC), interval=60)
    transport = CampaignTransport(Refusing(), bench.throttle, marks)
    body = {"messaging_product": "whatsapp", "to": "15550000000", "type": "text"}

    async with running(bench.dispatcher(lambda: datetime.now(UTC))):
        await eventually(bench.queued, within=30)
        await asyncio.sleep(1.0)
        full = await bench.rate_over(2.0)
        assert full <= rate * 1.25 + 10  # never faster than asked (plus one chunk's burst)
        assert full >= rate * 0.6, f"the unthrottled pace is {full:.1f}/s"

        for level in (1, 2):
            with pytest.raises(GraphError):
                await transport.deliver(body)
            assert await bench.throttle.level() == level
            await asyncio.sleep(1.05)  # past the debounce
        assert effective_rate(rate, 2) == rate / 4
        await asyncio.sleep(0.5)  # the chunk prepared at the old pace goes out
        slowed = await bench.rate_over(1.5)
        assert slowed <= rate / 4 * 1.5 + 3, f"slowed to {slowed:.1f}/s, not a quarter"
        assert slowed < full / 2

        # No further reports: the level lapses with the window and the full pace returns.
        await eventually(lambda: _is_zero(bench.throttle.level()), within=10, interval=0.2)
        await asyncio.sleep(1.0)
        recovered = await bench.rate_over(2.0)
        assert recovered >= rate * 0.6, f"the pace came back to {recovered:.1f}/s only"
        assert recovered > slowed * 2

    campaign = await bench.service.repository.get(campaign_id)
    assert campaign is not None and campaign.status == "running"


async def _is_zero(level: Any) -> bool:
    return int(await level) == 0


async def test_the_daily_cap_stops_the_campaign_until_utc_midnight(bench: Bench) -> None:
    """At the cap of unique contacts for the day the campaign is capped until the next UTC
    midnight and resumes then, day after day, until everyone is dispatched (injected clock)."""
    clock = Clock(datetime.now(UTC).replace(hour=22, minute=0, second=0, microsecond=0))
    campaign_id = await bench.start(12, rate=200, daily_cap=5)
    repository = bench.service.repository

    async def capped(count: int, until: datetime) -> Any:
        """The campaign once `count` messages are queued and it is capped until `until`."""
        campaign = await repository.get(campaign_id)
        assert campaign is not None
        if (
            await bench.queued() == count
            and campaign.capped_until is not None
            and campaign.capped_until.astimezone(UTC) == until
        ):
            return campaign
        return None

    async with running(bench.dispatcher(clock)):
        first_midnight = next_utc_midnight(clock.now)
        campaign = await eventually(lambda: capped(5, first_midnight), within=20)
        assert campaign.status == "running"

        clock.now = first_midnight - timedelta(seconds=1)  # a second before: still capped
        await asyncio.sleep(0.5)
        assert await bench.queued() == 5

        clock.now = first_midnight + timedelta(minutes=1)  # the next day
        second_midnight = first_midnight + timedelta(days=1)
        await eventually(lambda: capped(10, second_midnight), within=20)
        await asyncio.sleep(0.5)
        assert await bench.queued() == 10  # five a day, no more

        clock.now = second_midnight + timedelta(minutes=1)

        async def completed() -> bool:
            current = await repository.get(campaign_id)
            return current is not None and current.status == "completed"

        await eventually(completed, within=20)
        assert await bench.queued() == 12

    entries = await bench.redis.xrange(OUTBOUND_STREAM)
    contacts = {OutboundMessage.decode(fields["m"]).contact_id for _, fields in entries}
    assert len(contacts) == 12  # unique contacts, each once

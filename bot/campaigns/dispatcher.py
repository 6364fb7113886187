"""The dispatcher: drives running campaigns, paced, each recipient at most once.

It runs in every `sender` process (and `serve`); any number may run. Each running campaign is
driven by one of them at a time, under a Redis lease (`optin:campaigns:lease:<id>`, renewed
every chunk, released when done, expiring by itself if the process dies). Everything it knows is
in the database and Redis, so a `kill -9` loses nothing: the next holder carries on.

For each chunk of pending recipients (in recipient id order, the audience read page by page as
it goes, see `bot.campaigns.audience`):

1. re-check consent just before sending: a contact who said STOP a second ago, or no longer
   matches the audience, is `skipped` with the reason; the others are asked only about the
   categories that still match;
2. claim them: one UPDATE moves `pending` rows to `claimed`, so of two dispatchers (an expired
   lease) each recipient goes to exactly one;
3. for each, at the campaign's pace: put the re-consent request on the contact's stream (the
   conversation awaits the answer until the deadline), then the template on the outbound queue,
   both with ids derived from the recipient, so redoing them is a no-op; then mark `queued`.

A dispatcher that takes over a campaign first finishes the `claimed` rows its predecessor left
(re-queued idempotently, or skipped if they opted out meanwhile and nothing was queued).

Pace: a GCRA limiter (`bot.ratelimit`) on the campaign's own key at its rate, with a burst of one
chunk so the time spent between chunks is made up rather than lost. The sender's per-number
limit (SEND_RATE) still applies on top: the campaign goes no faster than the number, and replies
and other campaigns share the number's rate; give SEND_RATE at least the campaign rate. After a
130429 the pace is halved for a while (`bot.campaigns.throttle`).
Daily cap: recipients claimed since UTC midnight (counted in SQL when a drive starts, then
locally); at the cap the campaign is `capped_until` the next UTC midnight.
Language: each recipient gets the template in the language TEMPLATE_LANGUAGES gives for their
locale, when the account's template list holds it; otherwise the campaign's own, and the reason
(locale unknown, not listed, no such version) is logged once per campaign, locale and reason by
the process driving it.
The consent re-check is at most two chunks (about two fifths of a second of sending) before the
message is queued: one chunk is prepared while the one before it is paced out. At a steady pace
the outbound queue stays short, so it is also shortly before Meta.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from redis.asyncio import Redis

from bot import redis_keys
from bot.campaigns.audience import Criteria
from bot.campaigns.messages import (
    RecipientRef,
    TemplateSettings,
    message_id,
    reconsent_request,
    template_outbound,
)
from bot.campaigns.models import Campaign
from bot.campaigns.repository import CampaignRepository, criteria_of
from bot.campaigns.throttle import Throttle, effective_rate
from bot.db.transcript import TranscriptRepository
from bot.leases import ShardLeases
from bot.message_templates import TemplateGuard, TemplatesUnavailable
from bot.outbound import OutboundMessage, OutboundQueue
from bot.ratelimit import RateLimiter, sleep_until
from bot.streams import InboundQueue
from bot.transient import TRANSIENT_ERRORS, is_transient
from flows.consent import ConsentStatus

log = logging.getLogger(__name__)

LEASE_PREFIX: Final = redis_keys.CAMPAIGN_LEASES.prefix
MAX_CHUNK: Final = 200


def chunk_size(rate: float) -> int:
    """Recipients per chunk: a fifth of a second of sending, 1 to `MAX_CHUNK` (larger chunks
    would cost fewer database round trips, but their consent re-check would be older)."""
    return max(1, min(MAX_CHUNK, int(rate / 5)))


def group_size(rate: float) -> int:
    """Messages queued per Redis call: a fiftieth of a second of sending, at least one, so the
    outbound queue still fills at the pace, not a chunk at a time."""
    return max(1, int(rate / 50))


def next_utc_midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A claimed chunk whose messages are recorded and whose requests are on the streams."""

    recipient_ids: list[int]
    messages: list[OutboundMessage]


@dataclass(frozen=True, slots=True)
class DispatchContext:
    """What every campaign drive needs from the process."""

    repository: CampaignRepository
    transcript: TranscriptRepository
    redis: Redis
    inbound: InboundQueue
    outbound: OutboundQueue
    throttle: Throttle
    business_name: str
    phone_number_id: str
    clock: Callable[[], datetime]
    page_size: int = 1000
    template_languages: Mapping[str, str] = field(default_factory=dict)
    #: The account's template list, for which languages each template exists in.
    templates: TemplateGuard | None = None


class CampaignDispatcher:
    """The loop of one process: finds running campaigns and drives those it can lease."""

    def __init__(
        self,
        context: DispatchContext,
        *,
        consumer: str,
        lease_ttl_ms: int = 10_000,
        poll_interval: float = 1.0,
    ) -> None:
        self._context = context
        self._leases = ShardLeases(
            context.redis, prefix=LEASE_PREFIX, consumer=consumer, ttl_ms=lease_ttl_ms
        )
        self._poll = poll_interval
        self._driving: dict[int, asyncio.Task[None]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self._start_drives(stop)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    log.warning("campaign dispatcher cannot reach Redis or the database (%r)", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._poll)
        finally:
            for task in self._driving.values():
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task

    async def _start_drives(self, stop: asyncio.Event) -> None:
        for campaign_id, task in list(self._driving.items()):
            if task.done():
                del self._driving[campaign_id]
        for campaign_id in await self._context.repository.runnable(self._context.clock()):
            if campaign_id in self._driving or not await self._leases.acquire(campaign_id):
                continue
            drive = CampaignDrive(self._context, campaign_id, self._leases, stop)
            self._driving[campaign_id] = asyncio.create_task(
                drive.run(), name=f"campaign-{campaign_id}"
            )


class CampaignDrive:
    """One campaign, driven while this process holds its lease."""

    def __init__(
        self,
        context: DispatchContext,
        campaign_id: int,
        leases: ShardLeases,
        stop: asyncio.Event,
    ) -> None:
        self._c = context
        self._id = campaign_id
        self._leases = leases
        self._stop = stop
        self._limiter: RateLimiter | None = None
        self._pace = 0.0
        self._day_ends: datetime | None = None
        self._claimed_today = 0
        self._fallbacks: set[tuple[str | None, str]] = set()

    async def run(self) -> None:
        try:
            await self._drive()
        except Exception as exc:
            if is_transient(exc):
                log.warning(
                    "campaign %s: lost Redis or the database (%r); will resume", self._id, exc
                )
            else:
                log.exception("campaign %s: dispatching failed; will resume", self._id)
        finally:
            with contextlib.suppress(*TRANSIENT_ERRORS):
                await self._leases.release(self._id)

    async def _drive(self) -> None:
        """Prepare chunks (check, claim, record, request) one ahead of the one being paced
        out, so the database's time is not taken from the pace."""
        campaign = await self._c.repository.get(self._id)
        if campaign is None or campaign.status != "running":
            return
        await self._recover(campaign)
        ready: asyncio.Queue[Prepared | None] = asyncio.Queue(maxsize=1)
        producer = asyncio.create_task(self._produce(ready))
        marking: asyncio.Task[None] | None = None
        try:
            while (chunk := await ready.get()) is not None:
                try:
                    await self._queue_paced(chunk)
                    if marking is not None:
                        await marking
                except BaseException:
                    ready.task_done()
                    raise
                # Marked `queued` while the next chunk is paced out; done (for `ready.join`)
                # once marked. Unmarked, they stay `claimed` and are re-queued idempotently.
                marking = asyncio.create_task(self._mark_queued(chunk))
                marking.add_done_callback(lambda _: ready.task_done())
            if marking is not None:
                await marking
            await producer
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
            if marking is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await marking

    async def _produce(self, ready: asyncio.Queue[Prepared | None]) -> None:
        after = 0
        try:
            while not self._stop.is_set():
                if not await self._leases.renew(self._id):
                    log.warning("campaign %s: lease lost; another dispatcher carries on", self._id)
                    return
                campaign = await self._c.repository.get(self._id)
                if campaign is None or campaign.status != "running":
                    return
                room = await self._room(campaign)
                if room <= 0:
                    return
                size = min(room, chunk_size(await self._paced(campaign)))
                batch = await self._c.repository.waiting(
                    self._id, "pending", after=after, limit=size
                )
                if len(batch) < size and not campaign.audience_done:
                    await self._c.repository.materialise(
                        campaign, limit=self._c.page_size, now=self._c.clock()
                    )
                    if not batch:
                        continue
                if not batch:
                    await ready.join()  # the last chunk is queued: nothing is claimed now
                    if await self._c.repository.complete_if_done(self._id, self._c.clock()):
                        log.info("campaign %s: every recipient dispatched", self._id)
                        return
                    await self._recover(campaign)
                    after = 0
                    await asyncio.sleep(0.1)
                    continue
                after = batch[-1].recipient_id
                prepared = await self._prepare(campaign, batch)
                if prepared is not None:
                    await ready.put(prepared)
        finally:
            await ready.put(None)

    async def _room(self, campaign: Campaign) -> int:
        """How many more recipients may be claimed today (the daily cap), else set the cap."""
        if campaign.daily_cap is None:
            return MAX_CHUNK
        now = self._c.clock()
        if self._day_ends is None or now >= self._day_ends:
            self._day_ends = next_utc_midnight(now)
            day_start = self._day_ends - timedelta(days=1)
            self._claimed_today = await self._c.repository.claimed_since(self._id, day_start)
        room = campaign.daily_cap - self._claimed_today
        if room <= 0:
            log.info("campaign %s: daily cap %d reached", self._id, campaign.daily_cap)
            await self._c.repository.set_capped(self._id, self._day_ends, now)
        return room

    async def _paced(self, campaign: Campaign) -> float:
        """The pace now (halved after 130429s); keeps the limiter in step with it."""
        pace = effective_rate(campaign.rate, await self._c.throttle.level())
        if self._limiter is None or pace != self._pace:
            self._pace = pace
            self._limiter = RateLimiter(
                self._c.redis,
                redis_keys.CAMPAIGN_RATE.format(campaign_id=self._id),
                pace,
                burst=chunk_size(pace),
            )
        return pace

    async def _template(self, campaign: Campaign) -> TemplateSettings:
        available: frozenset[str] | None = None
        if self._c.templates is not None:
            try:
                available = await self._c.templates.languages(campaign.template_name)
            except TemplatesUnavailable as exc:
                log.warning("campaign %s: %s; languages are not checked", self._id, exc)
        return TemplateSettings(
            campaign_id=self._id,
            name=campaign.template_name,
            language=campaign.template_language,
            buttons=tuple(json.loads(campaign.buttons_json)),
            body_parameters=tuple(json.loads(campaign.body_parameters_json)),
            business_name=self._c.business_name,
            phone_number_id=self._c.phone_number_id,
            languages=self._c.template_languages,
            available=available,
        )

    def _log_fallbacks(self, template: TemplateSettings, who: Sequence[RecipientRef]) -> None:
        """Say once per locale and reason why recipients get the campaign's language."""
        for recipient in who:
            language, reason = template.choose_language(recipient)
            if reason is None or (recipient.locale, reason) in self._fallbacks:
                continue
            self._fallbacks.add((recipient.locale, reason))
            log.info(
                "campaign %s: template %s goes to contacts of locale %s in %s (the campaign's "
                "language): %s",
                self._id,
                template.name,
                recipient.locale or "(unknown)",
                language,
                reason,
            )

    async def _check(
        self, criteria: Criteria, batch: Sequence[RecipientRef]
    ) -> tuple[dict[tuple[str, ...], list[int]], dict[int, str]]:
        """Consent, re-read now: who is asked about what, and who is skipped and why."""
        facts = await self._c.repository.consent_facts(
            [r.contact_id for r in batch], criteria.categories
        )
        now = self._c.clock()
        asked: dict[tuple[str, ...], list[int]] = {}
        skipped: dict[int, str] = {}
        for recipient in batch:
            mine = facts.get(recipient.contact_id, {})
            categories = criteria.matching(mine, now)
            if categories:
                asked.setdefault(categories, []).append(recipient.recipient_id)
            elif any(f.status == ConsentStatus.OPTED_OUT for f in mine.values()):
                skipped[recipient.recipient_id] = "opted_out"
            else:
                skipped[recipient.recipient_id] = "not_eligible"
        return asked, skipped

    async def _prepare(self, campaign: Campaign, batch: Sequence[RecipientRef]) -> Prepared | None:
        """Re-check and claim a chunk, then record and request it; None when nobody in it is
        to be messaged."""
        asked, skipped = await self._check(criteria_of(campaign), batch)
        now = self._c.clock()
        await self._c.repository.skip(skipped, now)
        claimed = await self._c.repository.claim(asked, now)
        self._claimed_today += len(claimed)
        categories = {rid: cats for cats, ids in asked.items() for rid in ids}
        chosen = [(r, categories[r.recipient_id]) for r in batch if r.recipient_id in claimed]
        return await self._requested(campaign, chosen)

    async def _requested(
        self, campaign: Campaign, chosen: Sequence[tuple[RecipientRef, tuple[str, ...]]]
    ) -> Prepared | None:
        """Record the chunk's messages (one commit) and put its re-consent requests on the
        contacts' streams (one call), ahead of the messages themselves."""
        if not chosen:
            return None
        template = await self._template(campaign)
        self._log_fallbacks(template, [r for r, _ in chosen])
        now = self._c.clock()
        messages = [template_outbound(template, r, cats) for r, cats in chosen]
        await self._c.outbound.record(messages, now=now)
        await self._c.inbound.accept(
            [
                reconsent_request(
                    template,
                    recipient,
                    categories,
                    policy_version=campaign.policy_version,
                    deadline=campaign.deadline,
                    deadline_policy=campaign.on_deadline,
                    now=now,
                )
                for recipient, categories in chosen
            ]
        )
        return Prepared([r.recipient_id for r, _ in chosen], messages)

    async def _pace_out(self, chunk: Prepared) -> None:
        """Queue a prepared chunk's messages at the pace, then mark them queued."""
        await self._queue_paced(chunk)
        await self._mark_queued(chunk)

    async def _queue_paced(self, chunk: Prepared) -> None:
        """Queue a chunk's messages at the pace: its slots reserved in one call, then whatever
        is due queued in one Redis call, at least a fiftieth of a second's worth at a time, so
        a slow Redis round trip makes the groups larger instead of the pace slower."""
        limiter = self._limiter
        assert limiter is not None
        messages = chunk.messages
        due = await limiter.reserve(len(messages))
        step = group_size(self._pace)
        loop = asyncio.get_running_loop()
        start = 0
        while start < len(messages):
            await sleep_until(due[min(start + step, len(messages)) - 1])
            end = bisect.bisect_right(due, loop.time(), lo=start + 1)
            await self._c.outbound.put_recorded(messages[start:end])
            start = end

    async def _mark_queued(self, chunk: Prepared) -> None:
        await self._c.repository.mark_queued(chunk.recipient_ids, self._c.clock())

    async def _recover(self, campaign: Campaign) -> None:
        """Finish the recipients a previous holder claimed but may not have queued."""
        after = 0
        criteria = criteria_of(campaign)
        while True:
            batch = await self._c.repository.waiting(self._id, "claimed", after=after, limit=100)
            if not batch:
                return
            after = batch[-1].recipient_id
            asked, skipped = await self._check(criteria, batch)
            gone: dict[int, str] = {}
            recorded: list[int] = []
            for recipient_id, reason in skipped.items():
                known = await self._c.transcript.get_outbound(message_id(self._id, recipient_id))
                if known is None:
                    gone[recipient_id] = reason
                else:
                    recorded.append(recipient_id)
            await self._c.repository.skip(gone, self._c.clock())
            await self._c.repository.mark_queued(recorded, self._c.clock())
            await self._paced(campaign)
            by_id = {r.recipient_id: r for r in batch}
            prepared = await self._requested(
                campaign, [(by_id[rid], cats) for cats, ids in asked.items() for rid in ids]
            )
            if prepared is not None:
                await self._pace_out(prepared)
            log.info("campaign %s: finished %d claimed recipients", self._id, len(batch))

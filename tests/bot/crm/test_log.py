"""The delivery log: pages newest first, filters by contact and status, erasure of identifiers."""

from __future__ import annotations

from typing import cast

import aiohttp
from redis.asyncio import Redis

from bot.crm import open_crm_sync
from bot.crm.log import DeliveryLog, DeliveryStatus, is_cursor
from bot.crm.outbox import CrmOutbox
from bot.db.ledger import LedgerRepository
from bot.hooks import Hooks
from bot.settings import Settings
from tests.bot.crm.conftest import crm_event, running
from tests.fakes.receiver import FakeReceiver
from tests.fakes.webhooks import eventually


async def test_pages_filters_and_scrubbing(
    redis_client: Redis, http: aiohttp.ClientSession, receiver: FakeReceiver
) -> None:
    outbox = CrmOutbox(redis_client)
    for n in range(1, 6):
        await outbox.enqueue([crm_event(f"consent:{n}", 1 if n % 2 else 2)])
    log = DeliveryLog(redis_client)

    pending = await log.page()
    assert [d.event_id for d in pending.deliveries] == [f"consent:{n}" for n in (5, 4, 3, 2, 1)]
    assert {d.status for d in pending.deliveries} == {DeliveryStatus.PENDING}
    assert pending.next_cursor is None

    receiver.script("consent:3", 422)
    async with running(redis_client, http, receiver.url):

        async def settled() -> bool:
            page = await log.page(status=DeliveryStatus.PENDING)
            return not page.deliveries and len(receiver.requests) == 5

        await eventually(settled)

    first = await log.page(limit=2)
    assert [d.event_id for d in first.deliveries] == ["consent:5", "consent:4"]
    assert first.next_cursor is not None and is_cursor(first.next_cursor)
    second = await log.page(limit=2, cursor=first.next_cursor)
    assert [d.event_id for d in second.deliveries] == ["consent:3", "consent:2"]
    third = await log.page(limit=2, cursor=second.next_cursor)
    assert [d.event_id for d in third.deliveries] == ["consent:1"]
    assert third.next_cursor is None

    dead = await log.page(status=DeliveryStatus.DEAD)
    assert [d.event_id for d in dead.deliveries] == ["consent:3"]
    odd = await log.page(contact_id=1)
    assert [d.event_id for d in odd.deliveries] == ["consent:5", "consent:3", "consent:1"]
    assert odd.deliveries[0].wa_id == "15550000001"

    assert await log.scrub_contact(1) == 3
    kept = await log.get("consent:5")
    assert kept is not None and kept.wa_id is None and kept.status is DeliveryStatus.DELIVERED
    assert (await log.page(contact_id=1)).deliveries == []
    assert len((await log.page()).deliveries) == 5


async def test_an_erased_contact_leaves_the_log(redis_client: Redis) -> None:
    settings = Settings(business_webhook_url="http://127.0.0.1:9/crm", business_webhook_secret="s")
    sync = open_crm_sync(settings, redis_client, cast(LedgerRepository, None))
    assert sync is not None
    try:
        hooks = Hooks()
        sync.register(hooks)
        await sync.outbox.enqueue([crm_event("consent:1", 1), crm_event("consent:2", 2)])
        await hooks.emit_erased(1)
        await hooks.emit_erased(1)  # a repeated erasure is harmless
        log = DeliveryLog(redis_client)
        erased, kept = await log.get("consent:1"), await log.get("consent:2")
        assert erased is not None and (erased.wa_id, erased.contact_id) == (None, 1)
        assert kept is not None and kept.wa_id == "15550000002"
    finally:
        await sync.close()


def test_no_url_no_crm_sync() -> None:
    assert open_crm_sync(Settings(), cast(Redis, None), cast(LedgerRepository, None)) is None


def test_regression_an_out_of_range_cursor_is_not_a_cursor() -> None:
    """Bug: a cursor of two digit strings past 64 bits reached Redis, which refused it (500)."""
    from bot.crm.log import is_cursor

    assert is_cursor("18446744073709551615-18446744073709551615")
    assert not is_cursor("2211046295705449310045-1006286139369")
    assert not is_cursor("1-18446744073709551616")

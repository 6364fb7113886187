"""The template guard against Meta's template list: refusals, the Redis cache, paging, failures,
and the warning once per template when there is no list to ask."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from redis.asyncio import Redis

from bot import redis_keys
from bot.categories import load_categories
from bot.graph.templates import TemplateListClient, TemplateListError
from bot.locales import load_locales
from bot.message_templates import (
    TemplateGuard,
    TemplateRefused,
    TemplatesUnavailable,
    template_guard,
)
from bot.message_templates.catalog import CachedTemplateIndex
from bot.metrics import Metrics
from bot.settings import Settings
from flows.keywords import KeywordMatcher
from tests.fakes.graph import FakeGraph, template_entry

CATALOGS = load_locales()
MATCHER = KeywordMatcher(CATALOGS, [c.name for c in load_categories(None)])
WABA = "102290129340398"


@dataclass
class Clock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    graph: FakeGraph
    session: aiohttp.ClientSession
    redis: Redis
    clock: Clock

    def guard(self, *, page_size: int = 100) -> TemplateGuard:
        client = TemplateListClient(
            self.session,
            base_url=self.graph.base_url,
            waba_id=WABA,
            access_token="t",
            page_size=page_size,
        )
        index = CachedTemplateIndex(
            self.redis,
            redis_keys.TEMPLATE_LIST.format(waba_id=WABA),
            client.fetch_all,
            MATCHER,
            description=f"WhatsApp Business Account {WABA}",
            clock=self.clock,
        )
        return TemplateGuard(index)


@pytest.fixture
async def rig(redis_client: Redis) -> AsyncIterator[Rig]:
    async with FakeGraph(access_token="t") as graph, aiohttp.ClientSession() as session:
        yield Rig(graph, session, redis_client, Clock())


async def test_a_marketing_template_without_a_way_out_is_refused(rig: Rig) -> None:
    guard = rig.guard()
    allowed = await guard.check("spring_sale", "es")
    assert allowed.verified and allowed.info is not None
    assert allowed.info.opt_out == "quick reply 'Stop promotions'"
    assert (await guard.check("weekly_deals", "es")).verified  # a footer naming BAJA
    assert (await guard.check("order_shipped", "en_US")).verified  # utility: none needed

    with pytest.raises(TemplateRefused) as refused:
        await guard.check("flash_sale_no_opt_out", "en_US")
    assert refused.value.code == "template_without_opt_out"
    assert "flash_sale_no_opt_out" in str(refused.value) and "quick-reply" in str(refused.value)

    with pytest.raises(TemplateRefused) as unknown:
        await guard.check("never_approved", "en_US")
    assert unknown.value.code == "unknown_template"
    with pytest.raises(TemplateRefused, match=r"no language 'fr'.*it has en_US, es"):
        await guard.check("spring_sale", "fr")
    assert await guard.languages("spring_sale") == frozenset({"es", "en_US"})


async def test_one_read_of_the_list_serves_many_checks_until_it_is_old(rig: Rig) -> None:
    guard = rig.guard()
    for _ in range(20):
        await guard.check("spring_sale", "es")
    # Another process (another guard on the same Redis) reads the cache, not Meta.
    await rig.guard().check("reconsent_v2", "en_US")
    assert len(rig.graph.template_requests) == 1
    assert rig.graph.template_requests[0].headers["Authorization"] == "Bearer t"
    assert "fields=name,language,category,components,status" in (
        rig.graph.template_requests[0].path
    )

    # A template edited at Meta (its way out removed) is seen once the cache is 10 minutes old.
    rig.graph.templates[0] = template_entry("spring_sale", "es", "MARKETING")
    rig.clock.now += 599
    await guard.check("spring_sale", "es")
    rig.clock.now += 2
    with pytest.raises(TemplateRefused, match="without a way out"):
        await guard.check("spring_sale", "es")
    assert len(rig.graph.template_requests) == 2


async def test_an_unknown_name_reads_the_list_again_at_most_once_a_minute(rig: Rig) -> None:
    guard = rig.guard()
    await guard.check("spring_sale", "es")
    rig.graph.templates.append(template_entry("new_promo", "en_US", "MARKETING", footer="STOP?"))
    with pytest.raises(TemplateRefused):
        await guard.check("new_promo", "en_US")  # the list is seconds old: not read again
    assert len(rig.graph.template_requests) == 1
    rig.clock.now += 61
    assert (await guard.check("new_promo", "en_US")).verified
    assert len(rig.graph.template_requests) == 2


async def test_the_list_is_read_page_by_page(rig: Rig) -> None:
    rig.graph.templates += [template_entry(f"promo_{n}", "en_US", "UTILITY") for n in range(5)]
    guard = rig.guard(page_size=4)
    assert (await guard.check("promo_4", "en_US")).verified
    assert len(rig.graph.template_requests) == 3  # 11 templates, 4 a page
    assert "after=4" in rig.graph.template_requests[1].path
    assert (await guard.check("spring_sale", "es")).verified
    assert len(rig.graph.template_requests) == 3


async def test_when_meta_cannot_be_read_the_last_list_is_kept(rig: Rig) -> None:
    guard = rig.guard()
    rig.graph.fail_template_lists(1, status=500)
    with pytest.raises(TemplatesUnavailable, match="could not be read"):
        await guard.check("spring_sale", "es")
    # After a failure Meta is not asked again for 30 seconds.
    with pytest.raises(TemplatesUnavailable):
        await guard.check("spring_sale", "es")
    assert len(rig.graph.template_requests) == 1
    rig.clock.now += 31
    assert (await guard.check("spring_sale", "es")).verified

    rig.clock.now += 700
    rig.graph.fail_template_lists(1, status=500)
    assert (await guard.check("spring_sale", "es")).verified  # the day-old fallback
    assert len(rig.graph.template_requests) == 3


async def test_a_next_page_on_another_host_is_not_followed(rig: Rig) -> None:
    client = TemplateListClient(
        rig.session, base_url=rig.graph.base_url, waba_id=WABA, access_token="t", page_size=1
    )
    rig.graph.templates = rig.graph.templates[:2]
    pages = await client.fetch_all()
    assert [t["name"] for t in pages] == ["spring_sale", "spring_sale"]
    rig.graph.next_page_host = "graph.example.net"
    with pytest.raises(TemplateListError, match="another host"):
        await client.fetch_all()
    assert len(rig.graph.template_requests) == 3  # the second page was not asked for


async def test_without_an_account_id_templates_go_unchecked_with_a_warning_once(
    redis_client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    settings = Settings(access_token="t", phone_number_id="1")
    guard = template_guard(
        settings,
        redis_client,
        CATALOGS,
        MATCHER,
        None,
        unknown=metrics.templates_opt_out_unknown,
    )
    assert not guard.verifying
    with caplog.at_level(logging.WARNING, logger="bot.message_templates.catalog"):
        for _ in range(3):
            assert not (await guard.check("flash_sale_no_opt_out", "en_US")).verified
        await guard.check("spring_sale", "es")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "flash_sale_no_opt_out" in warnings[0] and "WHATSAPP_BUSINESS_ACCOUNT_ID" in warnings[0]
    text = metrics.render().decode()
    assert 'optin_templates_opt_out_unknown_total{template="flash_sale_no_opt_out"} 3.0' in text
    assert 'optin_templates_opt_out_unknown_total{template="spring_sale"} 1.0' in text

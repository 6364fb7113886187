"""The campaigns pages: progress, counts per state, rates over time as charts, the quality
guard's state, and pause / resume by an agent."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.campaigns.models import Campaign
from bot.console.audit import AuditLog
from bot.console.campaign_series import campaign_series, instants
from bot.console.charts import Line, line_chart
from bot.db.engine import session_factory
from tests.bot.console.support import Agent, console_app, console_settings, seed_campaign


@pytest.fixture
async def still(stack_urls: tuple[str, str], settings_for: Any) -> AsyncIterator[Agent]:
    """The web role only: no dispatcher sends or completes the seeded campaigns meanwhile."""
    settings = console_settings(settings_for, stack_urls)
    async with console_app(settings, web_only=True) as agent:
        yield agent


async def test_the_list_and_the_detail_of_a_campaign_the_guard_paused(still: Agent) -> None:
    campaign_id = await seed_campaign(still.services.engine)
    await still.login()
    listing = await still.page("/console/campaigns")
    assert f'href="/console/campaigns/{campaign_id}">Policy 2 re-consent</a>' in listing
    assert "c-campaign-paused" in listing

    page = await still.page(f"/console/campaigns/{campaign_id}")
    assert "<strong>Tripped:</strong> the guard paused this campaign" in page
    assert "60 of 60 (100.0 %)" in page
    row = r'<tr><th scope="row">([^<]+)</th><td>(\d+)</td></tr>'

    def table(table_id: str) -> dict[str, str]:
        found = re.search(rf'<table class="c-table" id="{table_id}">(.*?)</table>', page, re.S)
        assert found is not None, table_id
        return dict(re.findall(row, found.group(1)))

    counts, states = table("counts"), table("states")
    assert counts["recipients"] == "60"
    assert counts["delivered"] == "58" and counts["read"] == "20"
    assert counts["reconfirmed"] == "10" and counts["opted out"] == "4"
    assert states == {"delivered": "38", "failed": "2", "read": "20"}
    assert "failed 131026</th><td>2" in page
    assert page.count('<svg class="c-chart"') == 2 and page.count("<polyline") == 2
    assert "guard threshold (of delivered) 2.0 %" in page
    assert 'id="resume"' in page and 'id="pause"' not in page


async def test_an_agent_resumes_then_pauses_with_a_reason(still: Agent) -> None:
    campaign_id = await seed_campaign(still.services.engine)
    await still.login()
    page = f"/console/campaigns/{campaign_id}"
    resumed = await still.submit(f"{page}/resume", {}, from_page=page)
    assert resumed.status == 303 and resumed.headers["Location"] == f"{page}?done=resumed"
    assert 'id="campaign-status">running' in await still.page(page)

    again = await still.submit(f"{page}/resume", {}, from_page=page)
    assert again.status == 409
    assert "cannot be running" in await again.text()

    paused = await still.submit(
        f"{page}/pause", {"reason": "complaints <b>by phone</b>"}, from_page=page
    )
    assert paused.status == 303
    shown = await still.page(f"{page}?done=paused")
    assert "Campaign paused." in shown
    assert "paused by alice: complaints &lt;b&gt;by phone&lt;/b&gt;" in shown
    actions = [(e.agent, e.action) for e in await AuditLog(still.services.redis).latest(limit=3)]
    assert actions[:2] == [("alice", "campaign_pause"), ("alice", "campaign_resume")]


async def test_campaign_forms_need_the_csrf_token(still: Agent) -> None:
    campaign_id = await seed_campaign(still.services.engine)
    await still.login()
    page = f"/console/campaigns/{campaign_id}"
    refused = await still.submit(f"{page}/resume", {}, from_page=page, csrf=False)
    assert refused.status == 403
    assert 'id="campaign-status">paused' in await still.page(page)


async def test_an_unknown_campaign_is_a_404(still: Agent) -> None:
    await still.login()
    for path in ("/console/campaigns/4242", "/console/campaigns/x"):
        status, _ = await still.get(path)
        assert status == 404
    assert "No campaign yet" in await still.page("/console/campaigns")


async def test_the_series_counts_sends_and_answers_over_time(still: Agent) -> None:
    campaign_id = await seed_campaign(still.services.engine, status="running")
    sessions = session_factory(still.services.engine)
    async with sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
    assert campaign is not None and campaign.started_at is not None
    end = campaign.started_at + timedelta(hours=24)
    series = await campaign_series(sessions, campaign, end)
    assert len(series) == 24 and series[-1].at == end
    first, last = series[0], series[-1]
    assert (first.sent, first.replies, first.optouts) == (31, 12, 0)  # after one hour
    assert (last.sent, last.replies, last.optouts) == (60, 19, 4)
    assert last.reply_rate == pytest.approx(19 / 60)
    assert [p.sent for p in series] == sorted(p.sent for p in series)


def test_instants_and_an_empty_chart() -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    assert instants(start, start) == []
    assert instants(start, start + timedelta(hours=2), points=4)[0] == start + timedelta(minutes=30)
    assert "No data yet" in line_chart("Replies", [Line("rate", [])])
    svg = line_chart("<script>x</script>", [Line("a & b", [(start, 0.5)])])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "a &amp; b" in svg

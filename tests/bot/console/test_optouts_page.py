"""The opt-outs page across contacts: opt-outs and opt-ins per day, by category, source and
method, the latest decisions linking to each contact, and the CSV download."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

from bot.console.optouts_page import CSV_COLUMNS, method_group
from tests.bot.console.support import Agent


async def _decide(agent: Agent) -> tuple[int, int]:
    """One customer stops everything by keyword; another confirms a double opt-in."""
    chat = agent.chat
    chat.name = "Stopper"
    await chat.say("STOP")
    stopper = await chat.contact_id()
    chat.wa_id = "15550001002"
    chat.name = "Joiner"
    await chat.say("START")
    await chat.say("YES")
    joiner = await chat.contact_id()
    return stopper, joiner


def _cells(page: str, table_id: str) -> list[list[str]]:
    table = re.search(rf'<table class="c-table" id="{table_id}">(.*?)</table>', page, re.S)
    assert table is not None
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1).split("</thead>")[-1], re.S)
    return [
        [
            " ".join(re.sub(r"<[^>]+>", "", cell).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in rows
    ]


async def test_the_page_counts_and_lists_every_decision_across_contacts(agent: Agent) -> None:
    stopper, joiner = await _decide(agent)
    await agent.login()
    page = await agent.page("/console/opt-outs")
    totals = " ".join(
        re.sub(r"<[^>]+>", "", page.split('id="optout-totals">')[1].split("</p>")[0]).split()
    )
    assert totals.startswith("4 opt-outs and 4 opt-ins"), totals
    assert page.count('<svg class="c-chart"') == 4, "per day, by category, by source, by method"
    rows = _cells(page, "decisions")
    assert len(rows) == 8
    outs = [r for r in rows if r[2] == "opted out"]
    assert {r[3] for r in outs} == {"promotions", "order updates", "reminders", "account alerts"}
    assert {(r[1], r[4], r[5]) for r in outs} == {("Stopper", "keyword", "WhatsApp chat")}
    assert f'href="/console/contacts/{stopper}"' in page
    assert f'href="/console/contacts/{joiner}"' in page
    method_table = page.split('<section class="c-card" aria-label="By method">')[1].split(
        "</section>"
    )[0]
    assert re.search(r"keyword</span></th><td>4</td><td>0</td>", method_table)


async def test_filters_by_category_and_dates_and_says_why_a_bad_one_is_ignored(
    agent: Agent,
) -> None:
    await _decide(agent)
    await agent.login()
    only = await agent.page("/console/opt-outs", category="marketing")
    assert {r[3] for r in _cells(only, "decisions")} == {"promotions"}
    past = await agent.page("/console/opt-outs", since="2001-01-01", until="2001-01-31")
    assert "No opt-out or opt-in in these dates." in past
    bad = await agent.page("/console/opt-outs", since="last week")
    assert "Dates ignored" in bad and len(_cells(bad, "decisions")) == 8
    unknown = await agent.page("/console/opt-outs", category="<script>")
    assert "Unknown category ignored" in unknown and "<script>" not in unknown.replace(
        "<script src=", ""
    )


async def test_the_csv_has_every_row_with_links_and_is_logged(agent: Agent) -> None:
    stopper, _ = await _decide(agent)
    await agent.login()
    today = datetime.now(UTC).date()
    response = await agent.client.get(
        "/console/opt-outs.csv",
        params={"since": (today - timedelta(days=1)).isoformat(), "until": today.isoformat()},
    )
    assert response.status == 200 and response.content_type == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 8
    stops = [r for r in rows if r["decision"] == "opt-out"]
    assert {r["contact_page"] for r in stops} == {f"/console/contacts/{stopper}"}
    assert {r["method_group"] for r in stops} == {"keyword"}
    audit = await agent.page("/console/contacts/" + str(stopper))
    assert "download optouts" not in audit  # logged in the console log, not the contact's


def test_methods_are_grouped_as_the_page_counts_them() -> None:
    assert method_group("meta_user_preferences") == "Meta signal"
    assert method_group("clarification_timeout") == "silence"
    assert method_group("clarification") == "clarifying question"
    assert method_group("agent_action") == "agent"
    assert method_group("something_new") == "other"

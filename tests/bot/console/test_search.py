"""Finding contacts by number, BSUID, username or name, a page at a time, numbers masked."""

from __future__ import annotations

import re

import pytest

from bot.console.search import QueryKind, parse_query, search_contacts
from bot.db.engine import session_factory
from tests.bot.console.support import Agent


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("", QueryKind.ALL, ""),
        ("  +34 612-34 (5) ", QueryKind.NUMBER, "34612345"),
        ("us.13491208655302741918", QueryKind.BSUID, "US.13491208655302741918"),
        ("@Ana_B", QueryKind.USERNAME, "ana_b"),
        ("@", QueryKind.NAME, "@"),
        ("María José", QueryKind.NAME, "maría josé"),
        ("+", QueryKind.NAME, "+"),
    ],
)
def test_what_the_agent_typed(text: str, kind: QueryKind, value: str) -> None:
    query = parse_query(text)
    assert (query.kind, query.value) == (kind, value)


async def _seed(agent: Agent) -> dict[str, int]:
    contacts = agent.services.contacts
    ids: dict[str, int] = {}
    for n in range(30):
        contact = await contacts.resolve(
            wa_id=f"3461234{n:04d}", user_id=None, profile_name=f"Customer {n:02d}"
        )
        assert contact.id is not None
        ids[f"c{n}"] = contact.id
    people = [
        ("447700900001", "GB.1000000000000001", "ana_b", "Ana Bell"),
        ("447700900002", None, None, "ANAÏS Ortega"),
        (None, "US.13491208655302741918", "mark.t", "Mark Twain"),
    ]
    for wa_id, user_id, username, name in people:
        contact = await contacts.resolve(
            wa_id=wa_id, user_id=user_id, username=username, profile_name=name
        )
        assert contact.id is not None
        ids[name] = contact.id
    moved = await contacts.change_number(old_wa_id="447700900001", new_wa_id="447700900099")
    assert moved.id == ids["Ana Bell"]
    return ids


def _links(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'href="/console/contacts/(\d+)"', page)]


async def test_search_by_every_identifier(agent: Agent) -> None:
    ids = await _seed(agent)
    await agent.login()
    cases = {
        "+44 7700 900002": [ids["ANAÏS Ortega"]],
        "4477009000": [ids["ANAÏS Ortega"], ids["Ana Bell"]],
        "447700900001": [ids["Ana Bell"]],  # her former number
        "US.13491208655302741918": [ids["Mark Twain"]],
        "gb.1000000000000001": [ids["Ana Bell"]],
        "@ana": [ids["Ana Bell"]],
        "ana": [ids["ANAÏS Ortega"], ids["Ana Bell"]],
        "@mark": [ids["Mark Twain"]],
        "@twain": [],
        "mark": [ids["Mark Twain"]],
        "customer 1": [ids[f"c{n}"] for n in range(19, 9, -1)],
        "nobody": [],
    }
    for text, expected in cases.items():
        page = await agent.page("/console", q=text)
        assert _links(page) == expected, text


async def test_names_match_in_any_case_on_postgresql(agent: Agent) -> None:
    ids = await _seed(agent)
    await agent.login()
    dialect = agent.services.engine.dialect.name
    page = await agent.page("/console", q="anaï")
    # SQLite's lower() folds ASCII only: "ANAÏS" is found by "anaÏ" there, by "anaï" here.
    expected = [ids["ANAÏS Ortega"]] if dialect == "postgresql" else []
    assert _links(page) == expected
    assert _links(await agent.page("/console", q="ANA")) == [ids["ANAÏS Ortega"], ids["Ana Bell"]]


async def test_results_page_by_id_newest_first(agent: Agent) -> None:
    ids = await _seed(agent)
    await agent.login()
    first = await agent.page("/console", q="346")
    assert _links(first) == [ids[f"c{n}"] for n in range(29, 4, -1)]
    before = re.search(r"before=(\d+)", first)
    assert before is not None
    second = await agent.page("/console", q="346", before=before.group(1))
    assert _links(second) == [ids[f"c{n}"] for n in range(4, -1, -1)]
    assert "Older contacts" not in second and "Newest contacts" in second
    sessions = session_factory(agent.services.engine)
    everyone = await search_contacts(sessions, parse_query(""), page_size=100)
    assert [c.id for c in everyone.contacts] == sorted(ids.values(), reverse=True)
    assert everyone.next_before is None


async def test_numbers_are_masked_in_results(agent: Agent) -> None:
    await _seed(agent)
    await agent.login()
    page = await agent.page("/console", q="4477009")
    assert "+44 7••• ••••02" in page
    assert "447700900002" not in page


async def test_the_list_shows_each_contacts_consent_and_filters_by_it(agent: Agent) -> None:
    """Regression: the contact list showed no consent status and could not be filtered by it."""
    chat = agent.chat
    chat.name = "Stopper"
    await chat.say("STOP")
    stopper = await chat.contact_id()
    chat.wa_id = "15550001002"
    chat.name = "Starter"
    await chat.say("START")
    starter = await chat.contact_id()
    await agent.login()

    page = await agent.page("/console")
    row = re.search(rf'href="/console/contacts/{stopper}".*?</tr>', page, re.S)
    assert row is not None
    assert 'title="opted_out">opted out</span> promotions, order updates' in row.group(0)

    opted_out = _links(await agent.page("/console", consent="opted_out"))
    assert stopper in opted_out and starter not in opted_out
    pending = await agent.page("/console", consent="pending")
    assert _links(pending) == [starter]
    assert "waiting for an answer</span> promotions" in pending
    assert _links(await agent.page("/console", consent="lapsed")) == []
    ignored = _links(await agent.page("/console", consent="<bogus>"))
    assert {stopper, starter} <= set(ignored)


@pytest.mark.parametrize("text", ["Ana\x00", "\x00", "34\x00612", "\ud7ff"])
async def test_search_with_a_nul_answers_a_page_not_500(agent: Agent, text: str) -> None:
    """Regression: a NUL in the console search reached PostgreSQL, which refused it: 500.
    ("\\ud7ff" pins the prefix range, whose upper bound must not be a lone surrogate.)"""
    ids = await _seed(agent)
    await agent.login()
    page = await agent.page("/console", q=text)
    if text == "Ana\x00":
        assert _links(page) == [ids["ANAÏS Ortega"], ids["Ana Bell"]]

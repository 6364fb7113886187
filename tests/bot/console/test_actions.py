"""Agent actions: withdraw a category and ask again for consent, each with the agent's name and
a required note; and no way at all for an agent to grant consent."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from bot.db.consent_models import ConsentEvent
from bot.db.models import Contact
from tests.bot.console.support import Agent


async def _customer(agent: Agent) -> tuple[int, str]:
    await agent.chat.say("Hi, I have a question")
    contact_id = await agent.chat.contact_id()
    return contact_id, f"/console/contacts/{contact_id}"


async def test_an_agent_withdraws_a_category_with_a_note(agent: Agent) -> None:
    announced: list[tuple[int | None, list[str]]] = []

    async def observer(contact: Contact, events: Sequence[ConsentEvent]) -> None:
        announced.append((contact.id, [e.action for e in events]))

    agent.services.hooks.consent_changed.append(observer)
    contact_id, page = await _customer(agent)
    await agent.login()
    note = "Customer phoned on 22 Nov: no more offers please"
    response = await agent.submit(
        f"{page}/withdraw", {"category": "marketing", "note": note}, from_page=page
    )
    assert response.status == 303
    assert response.headers["Location"] == f"{page}?done=withdrawn#actions"

    (row,) = await agent.services.ledger.events(contact_id)
    assert (row.category, row.action, row.source, row.method) == (
        "marketing",
        "withdrawn",
        "agent",
        "agent_action",
    )
    assert json.loads(row.evidence_json or "{}") == {
        "agent": "alice",
        "note": note,
        "via": "console",
    }
    states = await agent.services.ledger.current(contact_id)
    assert states["marketing"].status.value == "opted_out"
    assert announced == [(contact_id, ["withdrawn"])]

    shown = await agent.page(f"{page}?done=withdrawn")
    assert "Withdrawn. The ledger row names you and your note." in shown
    assert re.search(
        r'c-withdrawn" title="withdrawn">opted out</span>:\s*'
        r'<span class="c-category" title="marketing">promotions',
        shown,
    )
    assert "evidence: agent" in shown
    assert "alice</strong> withdraw (marketing)" in shown


async def test_a_double_submit_records_one_withdrawal(agent: Agent) -> None:
    contact_id, page = await _customer(agent)
    await agent.login()
    form = await agent.page(page)
    action_id = re.search(r'name="action_id" value="([0-9a-f]{32})"', form)
    assert action_id is not None
    fields = {"category": "reminders", "note": "asked at the counter", "action_id": action_id[1]}
    for _ in range(2):
        assert (await agent.submit(f"{page}/withdraw", fields, from_page=page)).status == 303
    assert len(await agent.services.ledger.events(contact_id)) == 1


async def test_a_note_and_a_known_category_are_required(embedded_agent: Agent) -> None:
    agent = embedded_agent
    contact_id, page = await _customer(agent)
    await agent.login()
    for fields, message in (
        ({"category": "marketing", "note": "  "}, "A note of 3 to 1000 characters is required"),
        ({"category": "marketing"}, "A note of 3 to 1000 characters is required"),
        ({"category": "lottery", "note": "asked"}, "Unknown category: lottery"),
        ({"note": "asked"}, "Choose a category."),
        ({"category": "marketing", "note": "asked", "action_id": "1"}, "reload the page"),
    ):
        response = await agent.submit(f"{page}/withdraw", fields, from_page=page)
        assert response.status == 422, fields
        assert message in await response.text(), fields
    assert await agent.services.ledger.events(contact_id) == []


async def test_an_agent_sends_the_double_opt_in_again_and_only_the_customer_grants(
    agent: Agent,
) -> None:
    chat = agent.chat
    _, page = await _customer(agent)
    await agent.login()
    note = "Customer called: lost the confirmation message"
    response = await agent.submit(
        f"{page}/request-optin",
        {"category": ["marketing", "reminders"], "note": note},
        from_page=page,
    )
    assert response.status == 303
    await chat.settle()
    rows = await chat.ledger()
    assert [(r.category, r.action, r.source) for r in rows] == [
        ("marketing", "pending", "agent"),
        ("reminders", "pending", "agent"),
    ]
    assert rows[0].evidence["agent"] == "alice" and rows[0].evidence["note"] == note
    (prompt,) = await chat.replies()
    assert "YES" in prompt.text
    assert (await chat.consent())["marketing"] == "pending"

    await chat.say("YES")
    granted = [r for r in await chat.ledger() if r.action == "granted"]
    assert [(r.category, r.source, r.method) for r in granted] == [
        ("marketing", "agent", "double_opt_in"),
        ("reminders", "agent", "double_opt_in"),
    ]
    assert granted[0].evidence["reply_wamid"]  # the customer's own YES
    shown = await agent.page(page)
    assert "alice</strong> request optin (marketing,reminders)" in shown


async def test_no_route_grants_consent(embedded_agent: Agent) -> None:
    agent = embedded_agent
    contact_id, page = await _customer(agent)
    await agent.login()
    for path in ("grant", "optin", "consent", "opt-in", "start"):
        response = await agent.submit(
            f"{page}/{path}", {"category": "marketing", "note": "please"}, from_page=page
        )
        assert response.status in (404, 405), path
    crafted = await agent.submit(
        f"{page}/withdraw",
        {"category": "marketing", "note": "crafted", "action": "granted", "status": "opted_in"},
        from_page=page,
    )
    assert crafted.status == 303
    actions = {row.action for row in await agent.services.ledger.events(contact_id)}
    assert actions == {"withdrawn"}
    console_posts = sorted(
        route.resource.canonical
        for route in agent.client.server.app.router.routes()
        if route.method == "POST"
        and route.resource is not None
        and route.resource.canonical.startswith("/console")
    )
    assert console_posts == [
        "/console/campaigns/{campaign_id}/pause",
        "/console/campaigns/{campaign_id}/resume",
        "/console/contacts/{contact_id}/request-optin",
        "/console/contacts/{contact_id}/reveal",
        "/console/contacts/{contact_id}/withdraw",
        "/console/login",
        "/console/logout",
    ]


async def test_an_erased_contact_cannot_be_asked(embedded_agent: Agent) -> None:
    agent = embedded_agent
    contact = await agent.services.contacts.resolve(wa_id="erased:abcdefghijklmnop", user_id=None)
    page = f"/console/contacts/{contact.id}"
    await agent.login()
    response = await agent.submit(
        f"{page}/request-optin", {"category": "marketing", "note": "asked"}, from_page=page
    )
    assert response.status == 422
    assert "no one to ask" in await response.text()

"""A contact's page after a real conversation: identity, consent, window, the timeline with a
STOP and its confirmation, filters, the logged reveal, escaping, and the downloads."""

from __future__ import annotations

import json
import re

from bot.console.audit import AuditLog
from tests.bot.console.support import Agent


async def _stopped(agent: Agent) -> int:
    chat = agent.chat
    chat.name = "Ana <b>Bold</b>"
    await chat.say("Hello, when does my order arrive?")
    await chat.say("STOP")
    return await chat.contact_id()


def _titles(page: str) -> list[str]:
    """Each timeline card's title as read (tags dropped, spaces collapsed), newest first."""
    return [
        " ".join(re.sub(r"<[^>]+>", "", title).split())
        for title in re.findall(r'<p class="c-title">(.*?)</p>', page, re.S)
    ]


async def test_the_timeline_shows_the_stop_and_its_confirmation_in_order(agent: Agent) -> None:
    contact_id = await _stopped(agent)
    await agent.login()
    page = await agent.page(f"/console/contacts/{contact_id}")
    titles = _titles(page)
    # Regression: oldest first, four cards for one STOP (one per category) and raw codes.
    assert titles == [
        "We sent (text)",
        "opted out: promotions, order updates, reminders, account alerts",
        "Customer wrote (text)",
        "Customer wrote (text)",
    ]
    steps = [
        " ".join(re.sub(r"<[^>]+>", "", t).split())
        for t in re.findall(r'<p class="c-step">(.*?)</p>', page)
    ]
    assert steps == ["Conversation: One step, nothing pending → nothing pending"]
    assert 'title="whatsapp_thread">WhatsApp chat</span>' in page
    assert "by keyword" in page
    texts = re.findall(r'<p class="c-text" dir="auto">([^<]*)</p>', page)
    assert texts[1:] == ["STOP", "Hello, when does my order arrive?"]
    assert "You are unsubscribed" in texts[0] and "Acme Shoes" in texts[0]
    assert "evidence: wamid" in page and "keyword" in page
    assert re.search(r'id="consent-marketing">.*?promotions.*?c-opted_out.*?opted out', page, re.S)
    assert "closes in 23 h" in page
    # Regression: the first two digits were shown as the country code (+15 5•• ••• •01).
    assert "+1 5••-•••-••01" in page and "15550001001" not in page
    assert "Ana &lt;b&gt;Bold&lt;/b&gt;" in page


async def test_customer_text_is_shown_never_run(embedded_agent: Agent) -> None:
    chat = embedded_agent.chat
    chat.name = '<img src=x onerror="alert(1)">'
    await chat.say("<script>alert('owned')</script> & more")
    contact_id = await chat.contact_id()
    await embedded_agent.login()
    page = await embedded_agent.page(f"/console/contacts/{contact_id}")
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt; &amp; more" in page
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
    search = await embedded_agent.page("/console", q="<script>")
    assert "<script>" not in search.replace("<script src=", "")


async def test_filters_by_kind_and_date(agent: Agent) -> None:
    contact_id = await _stopped(agent)
    await agent.login()
    path = f"/console/contacts/{contact_id}"
    consent_only = await agent.page(path, kind="consent")
    assert _titles(consent_only) == [
        "opted out: promotions, order updates, reminders, account alerts"
    ]
    flows = _titles(await agent.page(path, kind="flow"))
    assert flows == ["One step: nothing pending → nothing pending"]
    assert _titles(await agent.page(path, since="2001-01-01", until="2001-01-31")) == []
    bad = await agent.page(path, since="yesterday")
    assert "Filter ignored" in bad and len(_titles(bad)) == 4


async def test_reveal_shows_the_number_once_and_is_logged(agent: Agent) -> None:
    contact_id = await _stopped(agent)
    await agent.login()
    path = f"/console/contacts/{contact_id}"
    response = await agent.submit(f"{path}/reveal", {}, from_page=path)
    assert response.status == 200
    revealed = await response.text()
    assert '<span class="c-mono" id="number">+15550001001</span>' in revealed
    assert "alice</strong> reveal number" in revealed
    again = await agent.page(path)
    assert "+15550001001" not in again
    (entry, *_) = await AuditLog(agent.services.redis).for_contact(contact_id)
    assert (entry.agent, entry.action, entry.contact_id) == ("alice", "reveal_number", contact_id)


async def test_downloads_of_the_transcript_and_the_proof(agent: Agent) -> None:
    contact_id = await _stopped(agent)
    await agent.login("bob-token-01234567890")
    base = f"/console/contacts/{contact_id}"

    text = await agent.client.get(f"{base}/transcript.txt")
    assert text.status == 200 and text.content_type == "text/plain"
    assert "attachment" in text.headers["Content-Disposition"]
    body = await text.text()
    assert "Customer wrote (text)\n    STOP" in body
    assert body.index("STOP") < body.index("Consent withdrawn: marketing") and body.index(
        "STOP"
    ) < body.index("You are unsubscribed")

    transcript = await (await agent.client.get(f"{base}/transcript.json")).json()
    kinds = [item["kind"] for item in transcript["items"]]
    assert kinds == ["inbound", "inbound", "flow", *["consent"] * 4, "outbound"]
    assert transcript["contact"]["number"] == "+1 5••-•••-••01"

    proof = await (await agent.client.get(f"{base}/consent-proof.json")).json()
    assert proof["contact"]["wa_id"] == "15550001001"
    assert proof["verification"]["ok"] is True
    assert proof["generated_by"] == "bob"
    assert [e["action"] for e in proof["events"]] == ["withdrawn"] * 4
    assert all(e["hash_valid"] and e["evidence"]["wamid"] for e in proof["events"])
    assert proof["consent"]["marketing"]["status"] == "opted_out"

    actions = [e.action for e in await AuditLog(agent.services.redis).for_contact(contact_id)]
    assert actions == ["download_proof", "download_transcript_json", "download_transcript_text"]


async def test_an_unknown_contact_is_a_404(embedded_agent: Agent) -> None:
    await embedded_agent.login()
    for path in ("/console/contacts/999999", "/console/contacts/abc"):
        status, page = await embedded_agent.get(path)
        assert status == 404 and "No such contact" in page


async def test_the_proof_json_is_valid_json_for_an_untouched_contact(
    embedded_agent: Agent,
) -> None:
    contact_id = await embedded_agent.chat.contact_id()
    await embedded_agent.login()
    response = await embedded_agent.client.get(f"/console/contacts/{contact_id}/consent-proof.json")
    proof = json.loads(await response.text())
    assert proof["events"] == [] and proof["verification"]["ok"] is True

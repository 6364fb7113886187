"""Keyword opt-out, end to end: STOP acts at once, in every state, and near misses never do."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from flows.locale_catalog import LocaleCatalog
from tests.bot.flows.conftest import BUSINESS, ChatOpener, every, only, opted_in
from tests.fakes.chat import Chat, Reply, envelope
from tests.fakes.graph import FakeGraph


def assert_one_stop_confirmation(replies: list[Reply], en: LocaleCatalog) -> None:
    """Exactly one message: plain text naming the business, what stopped and how to resume,
    with nothing else in it (no buttons, no list, no template, no link)."""
    assert len(replies) == 1, replies
    (reply,) = replies
    assert reply.text == en.render("stop_all_confirmation", business=BUSINESS)
    assert reply.kind == "text" and reply.status == "sandbox"
    assert BUSINESS in reply.text and "START" in reply.text
    assert not reply.buttons and not reply.rows and reply.template is None
    assert "http" not in reply.text.lower()


async def test_stop_from_a_contact_without_consent_records_do_not_contact(
    chat: Chat, en: LocaleCatalog
) -> None:
    await chat.say("STOP")

    assert await chat.consent() == every("opted_out")
    rows = await chat.ledger()
    assert sorted(r.category for r in rows) == sorted(every("x"))
    assert {(r.action, r.method, r.source) for r in rows} == {
        ("withdrawn", "keyword", "whatsapp_thread")
    }
    assert all(r.evidence["text"] == "STOP" and r.evidence["wamid"] for r in rows)
    assert_one_stop_confirmation(await chat.replies(), en)
    assert await chat.state() == "idle"


async def test_stop_withdraws_every_category_of_an_opted_in_contact(
    chat: Chat, en: LocaleCatalog
) -> None:
    chat = chat
    await opted_in(chat)
    before = len(await chat.ledger())

    await chat.say("stop")

    assert await chat.consent() == every("opted_out")
    new = (await chat.ledger())[before:]
    assert [(r.action, r.method) for r in new] == [("withdrawn", "keyword")] * 4
    assert_one_stop_confirmation(await chat.replies(), en)


async def test_stop_promotions_withdraws_marketing_only(chat: Chat, en: LocaleCatalog) -> None:
    chat = chat
    await opted_in(chat)

    await chat.say("STOP PROMOTIONS")

    assert await chat.consent() == only({"marketing": "opted_out"}, rest="opted_in")
    (reply,) = await chat.replies()
    assert reply.text == en.render(
        "stop_category_confirmation",
        business=BUSINESS,
        category="promotions",
        category_keyword="PROMOTIONS",
    )


async def test_a_repeated_stop_confirms_again_but_records_nothing_new(
    chat: Chat, en: LocaleCatalog
) -> None:
    chat = chat
    await chat.say("STOP")
    await chat.replies()
    rows = await chat.ledger()

    await chat.say("UNSUBSCRIBE")

    assert await chat.ledger() == rows
    assert_one_stop_confirmation(await chat.replies(), en)


async def _awaiting_optin(chat: Chat) -> str:
    await chat.say("START")
    return "optin_expiry"


async def _awaiting_clarification(chat: Chat) -> str:
    await chat.say("please stop sending me these")
    return "clarification"


async def _awaiting_reconsent(chat: Chat) -> str:
    await chat.say("hello")
    await chat.request(
        "reconsent",
        ["marketing"],
        policy_version="2",
        deadline=datetime.now(UTC) + timedelta(days=7),
    )
    return "reconsent_deadline"


FLOWS = {
    "awaiting_optin": _awaiting_optin,
    "awaiting_clarification": _awaiting_clarification,
    "awaiting_reconsent": _awaiting_reconsent,
}


@pytest.mark.parametrize("state", list(FLOWS))
async def test_stop_wins_in_every_state(
    open_chat: ChatOpener, en: LocaleCatalog, state: str
) -> None:
    chat = await open_chat()
    timer = await FLOWS[state](chat)
    assert await chat.state() == state
    assert await chat.timer_due(timer) is not None
    await chat.replies()

    await chat.say("STOP")

    assert await chat.state() == "idle"
    for kind in ("optin_expiry", "clarification", "reconsent_deadline"):
        assert await chat.timer_due(kind) is None
    assert await chat.consent() == every("opted_out")
    assert_one_stop_confirmation(await chat.replies(), en)
    # The cancelled flow's timer cannot come back: nothing fires, nothing changes.
    assert await chat.fire_timers(timedelta(days=30)) == 0
    assert await chat.consent() == every("opted_out")
    assert await chat.replies() == []


NEAR_MISSES = [
    "I want to cancel my order",
    "stop by the store",
    "STOPPED",
    "Can you stop by tomorrow?",
    "the bus stop is closed",
    "unstoppable",
    "What time do you open?",
]


async def test_near_misses_never_opt_out(chat: Chat) -> None:
    chat = chat
    await opted_in(chat)
    rows = await chat.ledger()

    for n, text in enumerate(NEAR_MISSES):
        await chat.say(text, wa_id=f"1555000{n:04d}", wait=False)
        await chat.say(text, wait=False)
    await chat.wait_idle()

    assert await chat.consent() == every("opted_in")
    assert await chat.ledger() == rows
    assert await chat.replies() == []
    for n in range(len(NEAR_MISSES)):
        wa_id = f"1555000{n:04d}"
        assert await chat.consent(wa_id) == every("none")
        assert await chat.replies(wa_id) == []


async def test_stop_from_a_contact_known_only_by_a_business_scoped_user_id(
    graph: FakeGraph, live_chat: Chat, en: LocaleCatalog
) -> None:
    """A username user (2026) writes without a phone number: the opt-out is theirs, and the
    confirmation goes to their user id in a body Meta's schema accepts."""
    chat = live_chat
    bsuid = "US.13491208655302741918"
    await chat.post(
        envelope(
            "messages",
            {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "sandbox"},
                "contacts": [{"profile": {"name": "Ana", "username": "ana.b"}, "user_id": bsuid}],
                "messages": [
                    {
                        "from_user_id": bsuid,
                        "id": "wamid.BSUID-STOP",
                        "timestamp": str(int(time.time())),
                        "type": "text",
                        "text": {"body": "STOP"},
                    }
                ],
            },
        )
    )
    await chat.wait_idle()

    assert await chat.consent(bsuid) == every("opted_out")
    (request,) = chat.graph_requests()
    assert request.action == "accepted" and request.validation_error is None
    assert request.json["recipient"] == bsuid and "to" not in request.json
    assert request.json["text"]["body"] == en.render("stop_all_confirmation", business=BUSINESS)

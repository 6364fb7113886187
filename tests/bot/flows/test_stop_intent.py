"""Every way a customer says stop, through the webhook: messages the bot used to ignore now get
the one clarifying question, a negated stop gets none, and the reason the question was asked is
kept in the ledger evidence (`stop_intent`) of the decision that answers it and shown on the
contact's timeline."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.console.timeline import Kind, build_timeline
from bot.db.engine import session_factory
from flows.locale_catalog import LocaleCatalog
from flows.replies import ids
from tests.bot.flows.conftest import BUSINESS, every, opted_in
from tests.bot.flows.test_clarify import assert_clarifying_question
from tests.fakes.chat import Chat

IGNORED_BEFORE = ["stpo", "remove me", "🛑", "who is this? stop", "not interested"]


async def test_messages_that_got_no_answer_now_get_the_question(
    chat: Chat, en: LocaleCatalog
) -> None:
    """Regression: each of these was an ordinary message, answered by nothing at all."""
    for n, text in enumerate(IGNORED_BEFORE):
        wa_id = f"155500031{n:02d}"
        await opted_in(chat, wa_id)
        rows = await chat.ledger(wa_id)

        await chat.say(text, wa_id=wa_id)

        assert_clarifying_question(await chat.replies(wa_id), en)
        assert await chat.state(wa_id) == "awaiting_clarification"
        assert await chat.ledger(wa_id) == rows
        assert await chat.consent(wa_id) == every("opted_in")


async def test_the_reason_is_kept_in_the_ledger_and_shown_on_the_timeline(chat: Chat) -> None:
    await opted_in(chat)
    await chat.say("stpo")
    await chat.replies()
    rows = await chat.ledger()

    await chat.tap(ids.CLARIFY_STOP_ALL, "Stop all messages")

    assert await chat.consent() == every("opted_out")
    new = (await chat.ledger())[len(rows) :]
    assert len(new) == 4
    for row in new:
        assert row.evidence["stop_intent"] == "typo of STOP (en, de)"
        assert row.evidence["button"] == ids.CLARIFY_STOP_ALL

    sessions = session_factory(chat.services.engine)
    timeline = await build_timeline(sessions, await chat.contact_id())
    asked = [i for i in timeline.items if i.kind is Kind.FLOW and i.why]
    assert [i.why for i in asked] == ["typo of STOP (en, de)"]
    assert ("why the bot asked", "typo of STOP (en, de)") in asked[0].details
    decided = [i for i in timeline.items if i.kind is Kind.CONSENT and i.action == "withdrawn"]
    assert decided and all(i.why == "typo of STOP (en, de)" for i in decided)
    assert "asked because: typo of STOP (en, de)" in (decided[0].summary or "")


async def test_silence_after_the_question_keeps_the_reason_too(chat: Chat) -> None:
    await opted_in(chat)
    await chat.say("wrong number")
    await chat.replies()
    rows = await chat.ledger()

    assert await chat.fire_timers(timedelta(hours=25)) == 1

    new = (await chat.ledger())[len(rows) :]
    assert {(r.action, r.method) for r in new} == {("withdrawn", "clarification_timeout")}
    assert {r.evidence["stop_intent"] for r in new} == {'phrase "wrong number" (en)'}


@pytest.mark.parametrize(
    "text", ["jangan berhenti kirim promo ya", "don't stop the promos", "no paren las ofertas"]
)
async def test_a_negated_stop_gets_no_question(chat: Chat, text: str) -> None:
    """Regression: "jangan berhenti kirim promo ya" ("don't stop the promos") was asked
    whether the customer wanted to stop."""
    await opted_in(chat)
    rows = await chat.ledger()

    await chat.say(text)

    assert await chat.replies() == []
    assert await chat.state() == "idle"
    assert await chat.ledger() == rows


async def test_an_arabic_wish_is_asked_in_arabic(
    chat: Chat, locales: dict[str, LocaleCatalog]
) -> None:
    """Regression: "لا ترسل لي رسائل" ("don't send me messages") got no answer."""
    await chat.say("لا ترسل لي رسائل")

    (question,) = await chat.replies()
    assert question.text == locales["ar"].render("clarify_prompt", business=BUSINESS)
    assert await chat.state() == "awaiting_clarification"

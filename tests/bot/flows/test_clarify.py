"""Unclear wishes to stop: one clarifying question with three buttons, each answer applied, and
silence handled by the business's policy (stop everything, or keep)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flows.locale_catalog import LocaleCatalog
from flows.replies import ids
from tests.bot.flows.conftest import BUSINESS, ChatOpener, every, only, opted_in
from tests.fakes.chat import Chat, Reply

UNCLEAR = ["please stop sending me these", "no more promotions", "unsubscribe me"]


def assert_clarifying_question(replies: list[Reply], en: LocaleCatalog) -> Reply:
    assert len(replies) == 1, replies
    (question,) = replies
    assert question.text == en.render("clarify_prompt", business=BUSINESS)
    assert question.kind == "interactive"
    assert question.buttons == (
        (ids.CLARIFY_STOP_ALL, en.render("clarify_stop_all_button")),
        (ids.CLARIFY_STOP + "marketing", "Stop promotions"),
        (ids.CLARIFY_KEEP, en.render("clarify_keep_button")),
    )
    return question


async def test_each_unclear_message_gets_one_question_and_changes_nothing(
    chat: Chat, en: LocaleCatalog
) -> None:
    chat = chat
    for n, text in enumerate(UNCLEAR):
        wa_id = f"155500020{n:02d}"
        await opted_in(chat, wa_id)
        rows = await chat.ledger(wa_id)

        await chat.say(text, wa_id=wa_id)

        assert_clarifying_question(await chat.replies(wa_id), en)
        assert await chat.state(wa_id) == "awaiting_clarification"
        assert await chat.consent(wa_id) == every("opted_in")
        assert await chat.ledger(wa_id) == rows
        # Saying it again while the question is open asks nothing more.
        await chat.say(text, wa_id=wa_id)
        assert await chat.replies(wa_id) == []


BUTTONS = {
    "stop everything": (ids.CLARIFY_STOP_ALL, "Stop all messages", every("opted_out")),
    "stop promotions only": (
        ids.CLARIFY_STOP + "marketing",
        "Stop promotions",
        only({"marketing": "opted_out"}, rest="opted_in"),
    ),
    "keep": (ids.CLARIFY_KEEP, "Keep receiving", every("opted_in")),
}


@pytest.mark.parametrize("answer", list(BUTTONS))
async def test_each_button_applies(open_chat: ChatOpener, en: LocaleCatalog, answer: str) -> None:
    chat = await open_chat()
    await opted_in(chat)
    await chat.say("no more promotions")
    assert_clarifying_question(await chat.replies(), en)
    rows = await chat.ledger()
    button_id, title, expected = BUTTONS[answer]

    await chat.tap(button_id, title)

    assert await chat.consent() == expected
    assert await chat.state() == "idle"
    assert await chat.timer_due("clarification") is None
    (reply,) = await chat.replies()
    new = (await chat.ledger())[len(rows) :]
    if answer == "keep":
        assert reply.text == en.render("clarify_kept", business=BUSINESS)
        assert new == []
    elif answer == "stop everything":
        assert reply.text == en.render("stop_all_confirmation", business=BUSINESS)
        assert {(r.action, r.method) for r in new} == {("withdrawn", "button")}
        assert len(new) == 4 and new[0].evidence["button"] == ids.CLARIFY_STOP_ALL
    else:
        assert "promotions" in reply.text and BUSINESS in reply.text
        assert [(r.category, r.action, r.method) for r in new] == [
            ("marketing", "withdrawn", "button")
        ]


@pytest.mark.parametrize(
    ("typed", "expected", "reply_key"),
    [
        ("YES", every("opted_out"), "stop_all_confirmation"),
        ("no", every("opted_in"), "clarify_kept"),
    ],
)
async def test_typed_yes_or_no_answers_the_question(
    open_chat: ChatOpener,
    en: LocaleCatalog,
    typed: str,
    expected: dict[str, str],
    reply_key: str,
) -> None:
    chat = await open_chat()
    await opted_in(chat)
    await chat.say("please stop sending me these")
    await chat.replies()

    await chat.say(typed)

    assert await chat.consent() == expected
    assert [r.text for r in await chat.replies()] == [en.render(reply_key, business=BUSINESS)]
    assert await chat.state() == "idle"
    if typed == "YES":
        assert {r.method for r in (await chat.ledger())[-4:]} == {"clarification"}


async def test_no_answer_stops_everything_when_the_timer_fires(
    chat: Chat, en: LocaleCatalog
) -> None:
    await opted_in(chat)
    await chat.say("unsubscribe me")
    await chat.replies()
    rows = await chat.ledger()
    assert await chat.timer_due("clarification") is not None

    # Not yet: an hour later nothing is due.
    assert await chat.fire_timers(timedelta(hours=1)) == 0
    assert await chat.consent() == every("opted_in")

    assert await chat.fire_timers(timedelta(hours=25)) == 1

    assert await chat.consent() == every("opted_out")
    new = (await chat.ledger())[len(rows) :]
    assert {(r.action, r.method) for r in new} == {("withdrawn", "clarification_timeout")}
    assert sorted(r.category for r in new) == sorted(every("x"))
    assert [r.text for r in await chat.replies()] == [
        en.render("stop_all_confirmation", business=BUSINESS)
    ]
    assert await chat.state() == "idle"


async def test_no_answer_changes_nothing_when_silence_means_keep(
    open_chat: ChatOpener,
) -> None:
    chat = await open_chat(clarification_silence="keep")
    await opted_in(chat)
    await chat.say("please stop sending me these")
    await chat.replies()
    rows = await chat.ledger()

    assert await chat.fire_timers(timedelta(hours=25)) == 1

    assert await chat.consent() == every("opted_in")
    assert await chat.ledger() == rows
    assert await chat.replies() == []
    assert await chat.state() == "idle"

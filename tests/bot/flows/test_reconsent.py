"""Re-consent: the business asks contacts to reconfirm under a new policy version, by a deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.locale_catalog import LocaleCatalog
from flows.replies import ids
from tests.bot.flows.conftest import BUSINESS, ChatOpener, every, only, opted_in
from tests.fakes.chat import Chat

ASKED = ["marketing", "reminders"]


async def ask(chat: Chat, deadline_policy: str | None = None) -> datetime:
    deadline = datetime.now(UTC) + timedelta(days=7)
    await chat.request(
        "reconsent",
        ASKED,
        policy_version="2",
        deadline=deadline,
        deadline_policy=deadline_policy,
        evidence={"campaign": "policy-2025"},
    )
    return deadline


async def test_yes_reconfirms_under_the_new_policy_version(chat: Chat, en: LocaleCatalog) -> None:
    await opted_in(chat)
    rows = len(await chat.ledger())
    deadline = await ask(chat)

    assert await chat.state() == "awaiting_reconsent"
    assert await chat.timer_due("reconsent_deadline") == pytest.approx(deadline.timestamp(), abs=1)
    assert await chat.consent() == every("opted_in")

    wamid = await chat.say("YES")

    assert await chat.state() == "idle"
    assert await chat.timer_due("reconsent_deadline") is None
    assert await chat.consent() == every("opted_in")
    new = (await chat.ledger())[rows:]
    assert [(r.category, r.action, r.method, r.policy_version) for r in new] == [
        ("marketing", "reconfirmed", "campaign_reply", "2"),
        ("reminders", "reconfirmed", "campaign_reply", "2"),
    ]
    assert all(r.source == "api" for r in new)
    assert all(r.evidence["campaign"] == "policy-2025" for r in new)
    assert all(r.evidence["reply_wamid"] == wamid for r in new)
    assert [r.text for r in await chat.replies()] == [
        en.render("reconsent_confirmed", business=BUSINESS)
    ]


async def test_the_yes_button_reconfirms(chat: Chat) -> None:
    chat = chat
    await opted_in(chat)
    await ask(chat)

    await chat.tap(ids.RECONSENT_YES, "Yes")

    assert [(r.action, r.policy_version) for r in (await chat.ledger())[-2:]] == [
        ("reconfirmed", "2")
    ] * 2


@pytest.mark.parametrize("answer", ["NO", "STOP"])
async def test_no_or_stop_withdraws(open_chat: ChatOpener, en: LocaleCatalog, answer: str) -> None:
    chat = await open_chat()
    await opted_in(chat)
    await ask(chat)

    await chat.say(answer)

    assert await chat.state() == "idle"
    assert await chat.timer_due("reconsent_deadline") is None
    if answer == "NO":
        assert await chat.consent() == only(
            {"marketing": "opted_out", "reminders": "opted_out"}, rest="opted_in"
        )
        assert [(r.category, r.action, r.method) for r in (await chat.ledger())[-2:]] == [
            ("marketing", "withdrawn", "campaign_reply"),
            ("reminders", "withdrawn", "campaign_reply"),
        ]
        expected = en.render("reconsent_withdrawn", business=BUSINESS)
    else:
        assert await chat.consent() == every("opted_out")
        expected = en.render("stop_all_confirmation", business=BUSINESS)
    assert [r.text for r in await chat.replies()] == [expected]


LAPSED = only({"marketing": "lapsed", "reminders": "lapsed"}, rest="opted_in")


@pytest.mark.parametrize(
    ("business_policy", "request_policy", "expected"),
    [
        ("lapse", None, LAPSED),
        ("keep", None, every("opted_in")),
        ("lapse", "keep", every("opted_in")),  # a campaign's own policy wins
        ("keep", "lapse", LAPSED),
    ],
)
async def test_the_deadline_lapses_or_keeps_by_policy(
    open_chat: ChatOpener,
    business_policy: str,
    request_policy: str | None,
    expected: dict[str, str],
) -> None:
    chat = await open_chat(reconsent_deadline_policy=business_policy)
    await opted_in(chat)
    await ask(chat, request_policy)
    rows = len(await chat.ledger())

    assert await chat.fire_timers(timedelta(days=6)) == 0
    assert await chat.fire_timers(timedelta(days=8)) == 1

    assert await chat.consent() == expected
    assert await chat.state() == "idle"
    assert await chat.replies() == []
    new = (await chat.ledger())[rows:]
    if expected == LAPSED:
        assert [(r.action, r.method, r.policy_version) for r in new] == [
            ("lapsed", "campaign_deadline", "2")
        ] * 2
    else:
        assert new == []

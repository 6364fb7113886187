"""Hostile text, end to end: characters PostgreSQL cannot store, and malformed sender ids.

Each test names the defect it pins. They run on both stacks (embedded, and PostgreSQL + Redis),
because the NUL defect only showed on PostgreSQL: the webhook answered 200, the event failed to
store five times, went to the dead letters, and the customer stayed opted in.
"""

from __future__ import annotations

import pytest

from bot.streams import DEAD_LETTER_STREAM
from tests.bot.flows.conftest import Chat, every, fresh_chat, opted_in
from tests.fakes.chat import message_webhook

#: STOP as it reads on screen, hidden by invisible or look-alike characters or letter spacing.
DISGUISED_STOPS = (
    "S\u200bTOP",  # zero-width space
    "STO\u00adP",  # soft hyphen
    "\ufeffSTOP",  # BOM
    "S\u200eTOP\u200f",  # bidi marks
    "ST\ufe0fOP",  # variation selector
    "S T O P",
    "S.T.O.P",
    "\ua731\u1d1b\u1d0f\u1d18",  # small capitals
    "\u0405\u0422\u041e\u0420",  # Cyrillic
    "\uff33\uff34\uff2f\uff30",  # fullwidth
    "\U0001d412\U0001d413\U0001d40e\U0001d40f",  # mathematical bold
)


async def _dead_letters(chat: Chat) -> int:
    return int(await chat.services.redis.xlen(DEAD_LETTER_STREAM))


async def test_stop_with_a_nul_opts_out_and_nothing_goes_dead(chat: Chat) -> None:
    """Regression: "STOP\\u0000" failed on PostgreSQL five times and went dead-lettered."""
    await opted_in(chat)
    dead = await _dead_letters(chat)

    await chat.say("STOP\u0000")

    assert await chat.consent() == every("opted_out")
    assert await _dead_letters(chat) == dead


@pytest.mark.parametrize("profile", ["Eve\u0000", "\ud800", "Eve\udfff\u0000 X"])
async def test_a_profile_name_with_nul_or_a_lone_surrogate_can_still_opt_out(
    chat: Chat, profile: str
) -> None:
    """Regression: the profile name rides on every message, so "Eve\\u0000" or "\\ud800" made
    every event of that customer fail to store: they could never opt out."""
    await opted_in(chat)
    dead = await _dead_letters(chat)
    hostile = Chat(chat.client, wa_id=chat.wa_id, name=profile)

    await hostile.say("STOP")

    assert await chat.consent() == every("opted_out")
    assert await _dead_letters(chat) == dead
    contact = await chat.contact()
    stored = contact.profile_name or ""
    assert "\x00" not in stored
    stored.encode("utf-8")  # no lone surrogate left


async def test_a_path_as_sender_is_an_unknown_event_and_no_contact(chat: Chat) -> None:
    """Regression: `from: "../../etc/passwd"` became a contact, readable at
    /v1/contacts/..%2F..%2Fetc%2Fpasswd/consent."""
    sender = "../../etc/passwd"
    payload = message_webhook(
        sender,
        {"id": "wamid.hostile-sender", "type": "text", "text": {"body": "START"}},
        phone_number_id=chat.phone_number_id,
    )
    await chat.post(payload)
    await chat.wait_idle()

    assert await chat.services.contacts.find(sender) is None
    assert await chat.services.contacts.find("etcpasswd") is None
    response = await chat.client.get("/v1/contacts/..%2F..%2Fetc%2Fpasswd/consent")
    assert response.status in (400, 401, 404)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("text", DISGUISED_STOPS, ids=ascii)
async def test_a_disguised_stop_opts_out_through_the_webhook(shared_app: Chat, text: str) -> None:
    """Regression: invisible and look-alike characters (S\\u200bTOP, STO\\u00adP, S T O P,
    small capitals, Cyrillic) hid a STOP: neither an opt-out nor a question."""
    chat = fresh_chat(shared_app)
    await opted_in(chat)

    await chat.say(text)

    assert await chat.consent() == every("opted_out")
    withdrawn = [row for row in await chat.ledger() if row.action == "withdrawn"]
    assert {row.method for row in withdrawn} == {"keyword"}
    assert {row.evidence["text"] for row in withdrawn} == {text}


@pytest.mark.asyncio(loop_scope="module")
async def test_spelled_words_and_near_misses_never_opt_out(shared_app: Chat) -> None:
    """Letter spacing is collapsed for the opt-out words only: "S I" and "O K" are not YES,
    and near misses of a disguised STOP are nothing."""
    tried = []
    for text in ("S I", "O K", "Y E S", "S T O", "ST OP", "S T O P S", "\u0405\u0422\u041e"):
        chat = fresh_chat(shared_app)
        tried.append((chat, text))
        await chat.say(text, wait=False)
    await shared_app.wait_idle()

    for chat, text in tried:
        assert await chat.consent() == every("none"), text
        assert await chat.ledger() == [], text


async def test_a_cyrillic_stop_with_a_nul_on_each_stack(chat: Chat) -> None:
    """Both defects at once on PostgreSQL: look-alike letters, a NUL, a zero-width space."""
    await opted_in(chat)
    await chat.say("\u0405\u200b\u0422\u041e\u0420\u0000")
    assert await chat.consent() == every("opted_out")

"""Hostile text, end to end: characters PostgreSQL cannot store, and malformed sender ids.

Each test names the defect it pins. They run on both stacks (embedded, and PostgreSQL + Redis),
because the NUL defect only showed on PostgreSQL: the webhook answered 200, the event failed to
store five times, went to the dead letters, and the customer stayed opted in.
"""

from __future__ import annotations

import pytest

from bot.streams import DEAD_LETTER_STREAM
from tests.bot.flows.conftest import Chat, every, opted_in
from tests.fakes.chat import message_webhook


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

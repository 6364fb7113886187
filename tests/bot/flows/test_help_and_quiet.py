"""HELP answers with who is writing, this contact's subscriptions and the commands; anything else
a customer sends opens the 24-hour window, is kept in the transcript, and gets no answer."""

from __future__ import annotations

from typing import Any

import pytest

from flows.locale_catalog import LocaleCatalog
from tests.bot.flows.conftest import BUSINESS, fresh_chat
from tests.fakes.chat import Chat


async def test_help_names_the_business_the_contacts_statuses_and_the_commands(
    chat: Chat, en: LocaleCatalog
) -> None:
    chat = chat
    await chat.say("STOP PROMOTIONS")
    await chat.say("START REMINDERS")
    await chat.replies()
    rows = await chat.ledger()

    await chat.say("HELP")

    (reply,) = await chat.replies()
    status_list = "\n".join(
        [
            "• promotions: off",
            "• order updates: off",
            "• reminders: on",
            "• account alerts: off",
        ]
    )
    assert reply.text == en.render("help", business=BUSINESS, status_list=status_list)
    for command in ("STOP", "START", "PREFERENCES", "HELP"):
        assert command in reply.text
    assert await chat.ledger() == rows
    assert await chat.state() == "idle"


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("word", "locale"), [("info", "en"), ("AYUDA", "es"), ("HILFE", "de")])
async def test_help_in_the_customers_language(
    shared_app: Chat, locales: dict[str, LocaleCatalog], word: str, locale: str
) -> None:
    chat = fresh_chat(shared_app)
    await chat.say(word)
    (reply,) = await chat.replies()
    catalog = locales[locale]
    off = catalog.render("status_off")
    assert reply.text == catalog.render(
        "help",
        business=BUSINESS,
        status_list="\n".join(
            f"• {catalog.category_name(c)}: {off}"
            for c in ("marketing", "order_updates", "reminders", "account_alerts")
        ),
    )


OTHER_MESSAGES: dict[str, dict[str, Any]] = {
    "text": {"type": "text", "text": {"body": "Where is my parcel?"}},
    "image": {
        "type": "image",
        "image": {
            "caption": "the box arrived damaged",
            "mime_type": "image/jpeg",
            "sha256": "1b3a6b0b3f4f1d8f6f0b8e6a4b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
            "id": "1003383421387256",
        },
    },
    "location": {
        "type": "location",
        "location": {"latitude": 52.52, "longitude": 13.405, "name": "Store"},
    },
    "reaction": {
        "type": "reaction",
        "reaction": {"message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI", "emoji": "👍"},
    },
}


async def test_any_other_message_opens_the_window_is_recorded_and_gets_no_answer(
    chat: Chat,
) -> None:
    chat = chat
    for n, (kind, message) in enumerate(OTHER_MESSAGES.items()):
        wa_id = f"155500040{n:02d}"
        await chat.send_message(message, wa_id=wa_id, shown=kind)

        assert await chat.window_open(wa_id), kind
        assert await chat.replies(wa_id) == [], kind
        assert await chat.ledger(wa_id) == [], kind
        contact = await chat.contact(wa_id)
        assert contact.id is not None
        rows = await chat.services.transcript.list_for_contact(contact.id)
        assert [(r.direction, r.kind) for r in rows if r.direction in ("inbound", "outbound")] == [
            ("inbound", "media" if kind == "image" else kind)
        ], kind
        assert await chat.state(wa_id) == "idle"


async def test_a_contact_who_never_wrote_has_no_window(chat: Chat) -> None:
    chat = chat
    await chat.contact("15550004999")
    assert not await chat.window_open("15550004999")

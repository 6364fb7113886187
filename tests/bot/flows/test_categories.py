"""Per-category stop and start, by category name or by any locale's alias, end to end."""

from __future__ import annotations

import pytest

from flows.locale_catalog import LocaleCatalog
from tests.bot.flows.conftest import BUSINESS, every, fresh_chat, only, opted_in
from tests.fakes.chat import Chat


def confirmation(catalog: LocaleCatalog, key: str, category: str) -> str:
    return catalog.render(
        key,
        business=BUSINESS,
        category=catalog.category_name(category),
        category_keyword=catalog.category_keyword(category).upper(),
    )


async def test_stop_then_start_one_category(chat: Chat, en: LocaleCatalog) -> None:
    chat = chat
    await opted_in(chat)
    rows = len(await chat.ledger())

    await chat.say("STOP REMINDERS")

    assert await chat.consent() == only({"reminders": "opted_out"}, rest="opted_in")
    assert [r.text for r in await chat.replies()] == [
        confirmation(en, "stop_category_confirmation", "reminders")
    ]

    await chat.say("START REMINDERS")

    assert await chat.consent() == every("opted_in")
    assert [r.text for r in await chat.replies()] == [
        confirmation(en, "start_category_confirmation", "reminders")
    ]
    new = (await chat.ledger())[rows:]
    assert [(r.category, r.action, r.method) for r in new] == [
        ("reminders", "withdrawn", "keyword"),
        ("reminders", "granted", "keyword"),
    ]
    assert await chat.state() == "idle"


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(
    ("text", "locale", "category"),
    [
        ("BAJA OFERTAS", "es", "marketing"),
        ("ofertas baja", "es", "marketing"),
        ("PROMOTIONS STOP", "en", "marketing"),
        ("ARRÊT PUB", "fr", "marketing"),
        ("abbestellen erinnerungen", "de", "reminders"),
        ("SAIR LEMBRETES", "pt", "reminders"),
        ("FERMA OFFERTE", "it", "marketing"),
        ("BERHENTI PROMOSI", "id", "marketing"),
        ("DUR KAMPANYALAR", "tr", "marketing"),
        ("توقف العروض", "ar", "marketing"),
        ("रोकें प्रचार", "hi", "marketing"),
    ],
)
async def test_stop_by_a_locale_alias(
    shared_app: Chat,
    locales: dict[str, LocaleCatalog],
    text: str,
    locale: str,
    category: str,
) -> None:
    chat = fresh_chat(shared_app)

    await chat.say(text)

    assert await chat.consent() == only({category: "opted_out"})
    (reply,) = await chat.replies()
    assert reply.text == confirmation(locales[locale], "stop_category_confirmation", category)
    (row,) = await chat.ledger()
    assert (row.category, row.action, row.method, row.evidence["text"]) == (
        category,
        "withdrawn",
        "keyword",
        text,
    )


async def test_start_by_a_locale_alias(chat: Chat, locales: dict[str, LocaleCatalog]) -> None:
    chat = chat
    await chat.say("BAJA OFERTAS")
    await chat.replies()

    await chat.say("ALTA OFERTAS")

    assert await chat.consent() == only({"marketing": "opted_in"})
    assert [r.text for r in await chat.replies()] == [
        confirmation(locales["es"], "start_category_confirmation", "marketing")
    ]


async def test_stopping_one_category_while_asked_to_opt_in_declines_the_rest(
    chat: Chat, en: LocaleCatalog
) -> None:
    chat = chat
    await chat.say("START")
    assert await chat.consent() == every("pending")
    await chat.replies()

    await chat.say("STOP PROMOTIONS")

    assert await chat.consent() == only({"marketing": "opted_out"})
    assert await chat.state() == "idle"
    assert await chat.timer_due("optin_expiry") is None
    assert [r.text for r in await chat.replies()] == [
        confirmation(en, "stop_category_confirmation", "marketing")
    ]

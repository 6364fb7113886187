"""The preferences menu: an interactive list with each category's status; a row toggles it."""

from __future__ import annotations

import pytest

from flows.locale_catalog import LocaleCatalog
from flows.replies import ids
from tests.bot.flows.conftest import BUSINESS, CATEGORIES, ChatOpener, every, only, opted_in
from tests.fakes.chat import Chat, Reply


def menu_rows(catalog: LocaleCatalog, statuses: dict[str, str]) -> tuple[tuple[str, str, str], ...]:
    def status(category: str) -> str:
        return catalog.render("status_on" if statuses[category] == "opted_in" else "status_off")

    return tuple(
        (
            ids.PREFERENCE + c,
            catalog.category_name(c),
            catalog.render("preferences_row_description", status=status(c)),
        )
        for c in CATEGORIES
    )


def assert_menu(replies: list[Reply], catalog: LocaleCatalog, statuses: dict[str, str]) -> None:
    assert len(replies) == 1, replies
    (menu,) = replies
    assert menu.kind == "interactive" and menu.body["interactive"]["type"] == "list"
    assert menu.text == catalog.render("preferences_body", business=BUSINESS)
    assert menu.rows == menu_rows(catalog, statuses)


async def test_the_menu_shows_each_category_and_a_row_toggles_it(
    chat: Chat, en: LocaleCatalog
) -> None:
    chat = chat
    await opted_in(chat)
    await chat.say("STOP REMINDERS")
    await chat.replies()
    statuses = only({"reminders": "opted_out"}, rest="opted_in")

    await chat.say("PREFERENCES")
    assert_menu(await chat.replies(), en, statuses)
    rows = len(await chat.ledger())

    await chat.choose(ids.PREFERENCE + "marketing", "promotions", "Currently on. Tap to change.")
    assert await chat.consent() == {**statuses, "marketing": "opted_out"}
    assert [r.text for r in await chat.replies()] == [
        en.render("preferences_updated_off", business=BUSINESS, category="promotions")
    ]

    await chat.choose(ids.PREFERENCE + "reminders", "reminders", "Currently off. Tap to change.")
    assert await chat.consent() == only({"marketing": "opted_out"}, rest="opted_in")
    assert [r.text for r in await chat.replies()] == [
        en.render("preferences_updated_on", business=BUSINESS, category="reminders")
    ]
    new = (await chat.ledger())[rows:]
    assert [(r.category, r.action, r.method) for r in new] == [
        ("marketing", "withdrawn", "preferences_menu"),
        ("reminders", "granted", "preferences_menu"),
    ]
    assert new[0].evidence["button"] == ids.PREFERENCE + "marketing"

    # The menu asked again shows the new statuses.
    await chat.say("settings")
    assert_menu(await chat.replies(), en, await chat.consent())


async def test_a_new_contact_sees_everything_off_and_a_row_turns_one_on(
    chat: Chat, en: LocaleCatalog
) -> None:
    chat = chat
    await chat.say("PREFERENCES")
    assert_menu(await chat.replies(), en, every("none"))

    await chat.choose(ids.PREFERENCE + "order_updates", "order updates")

    assert await chat.consent() == only({"order_updates": "opted_in"})


async def test_the_menu_speaks_the_contacts_language(
    chat: Chat, locales: dict[str, LocaleCatalog]
) -> None:
    chat = chat
    await chat.say("PREFERENCIAS")
    assert_menu(await chat.replies(), locales["es"], every("none"))


@pytest.mark.parametrize("default_locale", ["en", "es"])
async def test_menu_from_a_new_contact_is_answered_in_the_default_language_not_german(
    open_chat: ChatOpener, locales: dict[str, LocaleCatalog], default_locale: str
) -> None:
    """Bug: "MENU" is a word of de, en, es, it and tr; a contact whose language was unknown got
    the first of them alphabetically (German). Before the contact's language is known, a shared
    word is now read in the business's DEFAULT_LOCALE."""
    chat = await open_chat(default_locale=default_locale)
    await chat.say("MENU")
    assert_menu(await chat.replies(), locales[default_locale], every("none"))

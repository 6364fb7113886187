"""Consent specific to each purpose: a bare START offers "Yes" to the categories it names and a
"Choose" button that lists them, and the ledger records exactly what was chosen.

Bug pinned: a bare START asked for promotions, order updates, reminders and account alerts with
one Yes and no way to take some and not others.
"""

from __future__ import annotations

from flows.locale_catalog import LocaleCatalog
from flows.replies import ids
from tests.bot.flows.conftest import BUSINESS, CATEGORIES, every
from tests.fakes.chat import Chat


async def test_choose_lists_the_categories_and_grants_exactly_those_chosen(
    chat: Chat, en: LocaleCatalog
) -> None:
    await chat.say("START")
    (prompt,) = await chat.replies()
    assert [b[0] for b in prompt.buttons] == [ids.OPTIN_YES, ids.OPTIN_CHOOSE, ids.OPTIN_NO]

    await chat.tap(ids.OPTIN_CHOOSE, "Choose")
    (menu,) = await chat.replies()
    assert [row[0] for row in menu.rows] == [ids.OPTIN_PICK + c for c in CATEGORIES]
    assert await chat.consent() == every("pending")

    await chat.choose(ids.OPTIN_PICK + "marketing", "Promotions")
    (picked,) = await chat.replies()
    assert picked.text == en.render(
        "optin_picked", business=BUSINESS, category=en.category_name("marketing")
    )
    await chat.choose(ids.OPTIN_PICK + "reminders", "Reminders")
    await chat.say("NO")

    assert await chat.consent() == {
        "marketing": "opted_in",
        "order_updates": "none",
        "reminders": "opted_in",
        "account_alerts": "none",
    }
    assert await chat.state() == "idle"
    decided = [(r.category, r.action, r.method) for r in (await chat.ledger())[4:]]
    assert decided == [
        ("marketing", "granted", "double_opt_in"),
        ("reminders", "granted", "double_opt_in"),
        ("order_updates", "declined", "double_opt_in"),
        ("account_alerts", "declined", "double_opt_in"),
    ]


async def test_choosing_the_last_category_ends_the_question(chat: Chat) -> None:
    await chat.say("START PROMOTIONS")
    await chat.say("START")
    await chat.tap(ids.OPTIN_CHOOSE, "Choose")
    for category in ("order_updates", "reminders", "account_alerts"):
        await chat.choose(ids.OPTIN_PICK + category, category)

    assert await chat.consent() == every("opted_in")
    assert await chat.state() == "idle"
    assert await chat.timer_due("optin_expiry") is None


async def test_a_single_category_prompt_has_no_choose_button(chat: Chat) -> None:
    await chat.say("START PROMOTIONS")
    await chat.say("STOP PROMOTIONS")
    await chat.replies()
    await chat.request("optin", ["marketing"])
    (prompt,) = await chat.replies()
    assert [b[0] for b in prompt.buttons] == [ids.OPTIN_YES, ids.OPTIN_NO]

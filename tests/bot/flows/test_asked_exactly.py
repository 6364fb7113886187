"""A prompt and its replies name exactly the categories asked, and nobody is asked what they
cannot have.

Bugs pinned: after START PROMOTIONS, a bare START listed all four categories although three
were pending, and "No, thanks" said "we will not send you these messages" while promotions
stayed opted in; "please stop sending me these" from a contact already opted out of everything
got the three-button question, "keep receiving" included.
"""

from __future__ import annotations

from flows.locale_catalog import LocaleCatalog
from flows.replies import ids
from tests.bot.flows.conftest import BUSINESS, every, only
from tests.bot.flows.test_double_optin import joined
from tests.fakes.chat import Chat

REST = ("order_updates", "reminders", "account_alerts")


async def test_a_bare_start_asks_only_for_what_is_not_received(
    chat: Chat, en: LocaleCatalog
) -> None:
    await chat.say("START PROMOTIONS")
    assert await chat.consent() == only({"marketing": "opted_in"})
    await chat.replies()

    await chat.say("START")

    (prompt,) = await chat.replies()
    assert prompt.text == en.render("optin_prompt", business=BUSINESS, categories=joined(en, REST))
    assert await chat.consent() == {**every("pending"), "marketing": "opted_in"}

    await chat.tap(ids.OPTIN_NO, "No, thanks")

    assert [r.text for r in await chat.replies()] == [
        en.render("optin_declined", business=BUSINESS, categories=joined(en, REST))
    ]
    assert await chat.consent() == only({"marketing": "opted_in"})


async def test_start_when_everything_is_received_asks_nothing(chat: Chat) -> None:
    await chat.say("START")
    await chat.say("YES")
    assert await chat.consent() == every("opted_in")
    rows = len(await chat.ledger())
    await chat.replies()

    await chat.say("START")

    assert await chat.state() == "idle"
    assert len(await chat.ledger()) == rows
    (reply,) = await chat.replies()
    assert not reply.buttons and "Your subscriptions" in reply.text


async def test_an_unclear_wish_from_someone_opted_out_of_everything_is_not_asked(
    chat: Chat, en: LocaleCatalog
) -> None:
    await chat.say("STOP")
    assert await chat.consent() == every("opted_out")
    rows = len(await chat.ledger())
    await chat.replies()

    await chat.say("please stop sending me these")

    assert await chat.state() == "idle"
    assert len(await chat.ledger()) == rows
    assert [(r.text, r.buttons) for r in await chat.replies()] == [
        (en.render("stop_all_confirmation", business=BUSINESS), ())
    ]

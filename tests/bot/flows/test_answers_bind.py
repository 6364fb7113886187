"""An answer belongs to its question, through the webhook: a reply button counts only for the
message that asked the open question (Meta's `context` names it).

Bugs pinned: an old prompt's "Yes" opted the customer in (or reconfirmed) under a later
question, and an old "No" answered a question it was never shown with.
"""

from __future__ import annotations

from flows.locale_catalog import LocaleCatalog
from flows.replies import ids
from tests.bot.flows.conftest import BUSINESS, every
from tests.fakes.chat import Chat


async def prompt_wamid(chat: Chat) -> str:
    (prompt,) = [r for r in await chat.replies() if r.buttons]
    assert prompt.wamid is not None, "the sender records Meta's id of the prompt"
    return prompt.wamid


async def test_an_old_prompts_yes_does_not_opt_in_again(live_chat: Chat, en: LocaleCatalog) -> None:
    chat = live_chat
    await chat.say("START")
    first = await prompt_wamid(chat)
    await chat.tap(ids.OPTIN_YES, "Yes", context=first)
    assert await chat.consent() == every("opted_in")
    await chat.say("STOP")
    assert await chat.consent() == every("opted_out")
    await chat.replies()

    rows = len(await chat.ledger())
    await chat.tap(ids.OPTIN_YES, "Yes", context=first)

    assert await chat.consent() == every("opted_out")
    assert len(await chat.ledger()) == rows
    assert [r.text for r in await chat.replies()] == [en.render("stale_answer", business=BUSINESS)]


async def test_only_the_open_prompts_buttons_answer_it(live_chat: Chat) -> None:
    chat = live_chat
    await chat.say("START")
    first = await prompt_wamid(chat)
    await chat.say("NO")
    await chat.say("START")
    second = await prompt_wamid(chat)

    await chat.tap(ids.OPTIN_NO, "No, thanks", context=first)
    assert await chat.state() == "awaiting_optin"
    assert await chat.consent() == every("pending")

    await chat.tap(ids.OPTIN_YES, "Yes", context=second)
    assert await chat.state() == "idle"
    assert await chat.consent() == every("opted_in")


async def test_a_tap_on_a_message_not_yet_recorded_answers_the_open_question(
    chat: Chat,
) -> None:
    """Meta can deliver the tap before the sender has written the prompt's id: a context we do
    not know counts as answering the open question, as a typed YES would."""
    await chat.say("START")
    await chat.tap(ids.OPTIN_YES, "Yes", context="wamid.NOT-RECORDED")
    assert await chat.consent() == every("opted_in")

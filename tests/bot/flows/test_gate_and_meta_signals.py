"""Meta's own consent signals (WhatsApp's marketing preferences, template buttons, refused sends)
and the consent gate in front of every reply, end to end."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flows.locale_catalog import LocaleCatalog
from tests.bot.flows.conftest import BUSINESS, ChatOpener, every, only, opted_in
from tests.fakes.chat import Chat
from tests.fakes.graph import FakeGraph


async def test_meta_preferences_stop_withdraws_marketing_silently(chat: Chat) -> None:
    chat = chat
    await opted_in(chat)
    rows = len(await chat.ledger())

    await chat.meta_preferences("stop")

    assert await chat.consent() == only({"marketing": "opted_out"}, rest="opted_in")
    (row,) = (await chat.ledger())[rows:]
    assert (row.category, row.action, row.source, row.method) == (
        "marketing",
        "withdrawn",
        "meta_preferences",
        "meta_user_preferences",
    )
    assert (row.evidence["meta_value"], row.evidence["meta_category"]) == (
        "stop",
        "marketing_messages",
    )
    assert await chat.replies() == []


@pytest.mark.parametrize("value", ["resume", "signup"])
async def test_meta_preferences_resume_or_signup_grants_marketing(
    open_chat: ChatOpener, value: str
) -> None:
    chat = await open_chat()
    await chat.meta_preferences("stop")

    await chat.meta_preferences(value)

    assert await chat.consent() == only({"marketing": "opted_in"})
    row = (await chat.ledger())[-1]
    assert (row.action, row.source, row.method, row.evidence["meta_value"]) == (
        "granted",
        "meta_preferences",
        "meta_user_preferences",
        value,
    )
    assert await chat.replies() == []
    assert not await chat.window_open()  # Meta's notice is not a message from the customer


async def test_a_templates_stop_promotions_button_withdraws_marketing(
    chat: Chat, en: LocaleCatalog
) -> None:
    chat = chat
    await opted_in(chat)

    await chat.template_button("STOP_PROMOTIONS_PAYLOAD", "Stop promotions")

    assert await chat.consent() == only({"marketing": "opted_out"}, rest="opted_in")
    row = (await chat.ledger())[-1]
    assert (row.category, row.action, row.method) == (
        "marketing",
        "withdrawn",
        "meta_template_button",
    )
    assert (row.evidence["button"], row.evidence["text"]) == (
        "STOP_PROMOTIONS_PAYLOAD",
        "Stop promotions",
    )
    (reply,) = await chat.replies()
    assert reply.text == en.render(
        "stop_category_confirmation",
        business=BUSINESS,
        category="promotions",
        category_keyword="PROMOTIONS",
    )


async def test_meta_refusing_a_send_with_131050_records_a_marketing_withdrawal(
    graph: FakeGraph, live_chat: Chat
) -> None:
    chat = live_chat
    graph.fail_next(1, status=400, code=131050)

    await chat.say("HELP")

    (refused,) = chat.graph_requests()
    assert refused.action == "failed" and refused.validation_error is None
    (reply,) = await chat.replies()
    assert reply.status == "failed" and "131050" in (reply.reason or "")
    assert await chat.consent() == only({"marketing": "opted_out"})
    (row,) = await chat.ledger()
    assert (row.category, row.action, row.method) == ("marketing", "withdrawn", "meta_send_error")
    assert row.evidence["error_code"] == "131050"
    assert row.evidence["message_id"] == reply.message_id
    # The next HELP goes out, and shows promotions off.
    await chat.say("HELP")
    (again,) = await chat.replies()
    assert again.status == "sent" and "• promotions: off" in again.text


async def test_meta_refusing_a_send_with_131047_closes_the_window(
    graph: FakeGraph, live_chat: Chat
) -> None:
    chat = live_chat
    await chat.say("Hello")
    assert await chat.window_open()
    graph.fail_next(1, status=400, code=131047)

    await chat.say("HELP")

    assert [r.action for r in chat.graph_requests()] == ["failed"]
    assert not await chat.window_open()
    assert await chat.ledger() == []
    # The gate now refuses free-form replies until the customer writes again... but writing
    # again is exactly what reopens it: the next HELP is answered.
    await chat.replies()
    await chat.say("HELP")
    (reply,) = await chat.replies()
    assert reply.status == "sent"


async def test_a_stop_confirmation_is_not_sent_outside_the_window(chat: Chat) -> None:
    """The clarification timer fires after the window closed: the withdrawal is recorded, the
    free-form confirmation is refused by the gate and kept with the reason."""
    chat = chat
    await chat.say("please stop sending me these")
    await chat.replies()
    await chat.services.window.close(await chat.contact_id())

    await chat.fire_timers(timedelta(hours=25))

    assert await chat.consent() == every("opted_out")
    (confirmation,) = await chat.replies()
    assert (confirmation.status, confirmation.reason) == ("refused", "consent gate: window_closed")


async def test_an_opted_out_contact_is_not_asked_again_outside_the_window(
    graph: FakeGraph, open_chat: ChatOpener
) -> None:
    chat = await open_chat(
        graph=graph,
        access_token="t",
        graph_api_url=graph.base_url,
        optin_template="optin_confirm",
        template_languages=(("en", "en_US"),),
    )
    await chat.say("STOP")
    await chat.replies()
    chat.graph_requests()
    await chat.services.window.close(await chat.contact_id())

    await chat.request("optin", ["marketing"])

    (prompt,) = await chat.replies()
    assert (prompt.kind, prompt.status, prompt.reason) == (
        "template",
        "refused",
        "consent gate: opted_out",
    )
    assert chat.graph_requests() == []
    # The unanswered request leaves the STOP in force.
    await chat.fire_timers(timedelta(hours=49))
    assert await chat.consent() == every("opted_out")


async def test_an_opted_out_contact_who_writes_start_is_asked_in_the_window(
    chat: Chat,
) -> None:
    chat = chat
    await chat.say("STOP")
    await chat.replies()

    await chat.say("START")

    (prompt,) = await chat.replies()
    assert (prompt.kind, prompt.status, prompt.reason) == ("interactive", "sandbox", None)
    assert await chat.consent() == every("pending")

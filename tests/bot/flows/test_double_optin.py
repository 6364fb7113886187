"""Double opt-in, end to end: asked by the customer (START) or by the business, answered YES or
NO (by button or typed, in several languages), or left to expire."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from flows.locale_catalog import LocaleCatalog
from flows.replies import ids
from tests.bot.flows.conftest import BUSINESS, CATEGORIES, ChatOpener, every, fresh_chat, only
from tests.fakes.chat import Chat, Reply
from tests.fakes.graph import FakeGraph


def joined(catalog: LocaleCatalog, categories: Sequence[str]) -> str:
    names = [catalog.category_name(c) for c in categories]
    if len(names) <= 1:
        return "".join(names)
    return (
        catalog.render("category_list_separator").join(names[:-1])
        + catalog.render("category_list_last_separator")
        + names[-1]
    )


def assert_prompt(
    replies: list[Reply], catalog: LocaleCatalog, categories: Sequence[str] = CATEGORIES
) -> Reply:
    """One interactive message naming the business, exactly `categories`, how to stop, and
    Yes / No reply buttons (and Choose between them when it asks about several)."""
    assert len(replies) == 1, replies
    (prompt,) = replies
    assert prompt.text == catalog.render(
        "optin_prompt", business=BUSINESS, categories=joined(catalog, categories)
    )
    assert BUSINESS in prompt.text
    assert any(word in prompt.text for word in ("STOP", *catalog.keywords["stop_all"]))
    assert prompt.kind == "interactive"
    choose = ((ids.OPTIN_CHOOSE, catalog.render("choose_button")),) if len(categories) > 1 else ()
    assert prompt.buttons == (
        (ids.OPTIN_YES, catalog.render("yes_button")),
        *choose,
        (ids.OPTIN_NO, catalog.render("no_button")),
    )
    return prompt


async def test_start_then_yes_button_grants_the_default_categories(
    chat: Chat, en: LocaleCatalog
) -> None:
    await chat.say("START")

    assert await chat.consent() == every("pending")
    assert await chat.state() == "awaiting_optin"
    prompt = assert_prompt(await chat.replies(), en)
    assert "promotions, order updates, reminders and account alerts" in prompt.text
    pending = await chat.ledger()
    assert {(r.action, r.source) for r in pending} == {("pending", "whatsapp_thread")}

    yes_wamid = await chat.tap(ids.OPTIN_YES, "Yes")

    assert await chat.consent() == every("opted_in")
    assert await chat.state() == "idle"
    assert await chat.timer_due("optin_expiry") is None
    assert [r.text for r in await chat.replies()] == [
        en.render("optin_confirmed", business=BUSINESS, categories=joined(en, CATEGORIES))
    ]
    granted = (await chat.ledger())[len(pending) :]
    assert sorted(r.category for r in granted) == sorted(CATEGORIES)
    for row in granted:
        assert (row.action, row.method) == ("granted", "double_opt_in")
        assert row.evidence["shown_text"] == prompt.text
        assert row.evidence["reply_wamid"] == yes_wamid
        assert row.evidence["reply_button"] == ids.OPTIN_YES


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(
    ("start", "yes", "locale"),
    [
        ("START", "yes", "en"),
        ("ALTA", "SÍ", "es"),
        ("VOLTAR", "SIM", "pt"),
        ("REPRENDRE", "OUI", "fr"),
        ("STARTEN", "JA", "de"),
        ("RIPRENDI", "sì", "it"),
        ("MULAI", "YA", "id"),
        ("BAŞLA", "EVET", "tr"),
    ],
)
async def test_a_typed_yes_in_the_customers_language_grants(
    shared_app: Chat,
    locales: dict[str, LocaleCatalog],
    start: str,
    yes: str,
    locale: str,
) -> None:
    chat = fresh_chat(shared_app)
    catalog = locales[locale]
    await chat.say(start)
    prompt = assert_prompt(await chat.replies(), catalog)

    wamid = await chat.say(yes)

    assert await chat.consent() == every("opted_in")
    assert [r.text for r in await chat.replies()] == [
        catalog.render("optin_confirmed", business=BUSINESS, categories=joined(catalog, CATEGORIES))
    ]
    for row in (await chat.ledger())[4:]:
        assert (row.action, row.method) == ("granted", "double_opt_in")
        assert row.evidence["shown_text"] == prompt.text
        assert (row.evidence["reply_wamid"], row.evidence["reply_text"]) == (wamid, yes)


@pytest.mark.parametrize("answer", ["button", "typed"])
async def test_no_declines(open_chat: ChatOpener, en: LocaleCatalog, answer: str) -> None:
    chat = await open_chat()
    await chat.say("START")
    await chat.replies()

    if answer == "button":
        await chat.tap(ids.OPTIN_NO, "No, thanks")
    else:
        await chat.say("No thanks")

    assert await chat.consent() == every("none")
    assert await chat.state() == "idle"
    assert await chat.timer_due("optin_expiry") is None
    assert [r.text for r in await chat.replies()] == [
        en.render("optin_declined", business=BUSINESS, categories=joined(en, CATEGORIES))
    ]
    declined = (await chat.ledger())[4:]
    assert {(r.action, r.method) for r in declined} == {("declined", "double_opt_in")}


async def test_no_answer_expires_the_request(chat: Chat) -> None:
    chat = chat
    await chat.say("START")
    await chat.replies()
    assert await chat.timer_due("optin_expiry") is not None

    assert await chat.fire_timers(timedelta(hours=47)) == 0
    assert await chat.consent() == every("pending")

    assert await chat.fire_timers(timedelta(hours=49)) == 1

    assert await chat.consent() == every("none")
    assert await chat.state() == "idle"
    expired = (await chat.ledger())[4:]
    assert {(r.action, r.method) for r in expired} == {("expired", "optin_expiry")}
    assert await chat.replies() == []
    # A late YES asks nothing and grants nothing.
    await chat.say("YES")
    assert await chat.consent() == every("none")
    assert await chat.replies() == []


async def test_an_expired_request_leaves_an_earlier_stop_in_force(chat: Chat) -> None:
    chat = chat
    await chat.say("STOP")
    await chat.say("START")
    assert await chat.consent() == every("pending")

    await chat.fire_timers(timedelta(hours=49))

    assert await chat.consent() == every("opted_out")


async def test_a_declined_request_leaves_an_earlier_stop_in_force(chat: Chat) -> None:
    chat = chat
    await chat.say("STOP PROMOTIONS")
    await chat.say("START")
    await chat.say("NO")

    assert await chat.consent() == only({"marketing": "opted_out"})


async def test_a_business_request_in_an_open_window_is_an_interactive_prompt(
    chat: Chat, en: LocaleCatalog
) -> None:
    chat = chat
    await chat.say("Hi, I signed up on your website")
    assert await chat.replies() == []

    await chat.request(
        "optin", ["marketing", "reminders"], source="website", evidence={"ip": "203.0.113.9"}
    )

    assert await chat.consent() == only({"marketing": "pending", "reminders": "pending"})
    prompt = assert_prompt(await chat.replies(), en, ["marketing", "reminders"])
    assert prompt.status == "sandbox"

    await chat.say("YES")

    assert await chat.consent() == only({"marketing": "opted_in", "reminders": "opted_in"})
    granted = (await chat.ledger())[2:]
    for row in granted:
        assert (row.action, row.method, row.source) == ("granted", "double_opt_in", "website")
        assert row.evidence["ip"] == "203.0.113.9"
        assert row.evidence["shown_text"] == prompt.text


async def test_a_business_request_in_a_closed_window_is_a_template_meta_accepts(
    graph: FakeGraph, open_chat: ChatOpener, en: LocaleCatalog
) -> None:
    chat = await open_chat(
        graph=graph,
        access_token="t",
        graph_api_url=graph.base_url,
        optin_template="optin_confirm",
        template_languages=(("en", "en_US"),),
    )
    assert graph.schema_available

    await chat.request("optin", ["marketing"], evidence={"ip": "203.0.113.9"})

    (request,) = chat.graph_requests()
    assert request.action == "accepted" and request.validation_error is None
    template = request.json["template"]
    assert (template["name"], template["language"]["code"]) == ("optin_confirm", "en_US")
    body, yes, no = template["components"]
    assert [p["text"] for p in body["parameters"]] == [BUSINESS, "promotions"]
    assert yes["parameters"][0]["payload"] == ids.OPTIN_YES
    assert no["parameters"][0]["payload"] == ids.OPTIN_NO
    (prompt,) = await chat.replies()
    assert (prompt.kind, prompt.status, prompt.template) == ("template", "sent", "optin_confirm")

    # The customer taps the template's quick-reply button: Meta's `button` message.
    await chat.template_button(ids.OPTIN_YES, "Yes")

    assert await chat.consent() == only({"marketing": "opted_in"})
    (confirmed,) = await chat.replies()
    assert confirmed.status == "sent"
    assert confirmed.text == en.render(
        "optin_confirmed", business=BUSINESS, categories="promotions"
    )


async def test_refused_prompt_lost_the_gates_reason_in_the_transcript(
    chat: Chat,
) -> None:
    """A business request outside the window, without a template, is refused by the gate and
    kept with the reason. Bug: the reason was lost (the row was recorded in its final status
    `refused`, so the reason written after it by `mark_outbound` never landed)."""
    chat = chat

    await chat.request("optin", ["marketing"])

    (prompt,) = await chat.replies()
    assert (prompt.status, prompt.reason) == ("refused", "consent gate: window_closed")
    assert prompt.kind == "interactive"
    assert await chat.consent() == only({"marketing": "pending"})

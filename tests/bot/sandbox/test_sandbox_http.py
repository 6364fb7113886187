"""The sandbox chat over HTTP, through the real app: pages, the relay to `/webhook`, the flows'
answers in the state the page polls, CSRF, escaping, and the business panel."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.appkeys import SERVICES
from bot.sender import SANDBOX_WAMID_PREFIX
from bot.services import Services
from tests.bot.sandbox.sandboxcalls import SandboxPage, choice_context, csrf_token, status_of
from tests.fakes.webhooks import dumps, eventually

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]

CUSTOMER = "12025550101"


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, tmp_path: Any, settings_for: Any
) -> TestClient[Any, Any]:
    """The app in sandbox mode (no access token) with an app secret, so webhooks must be
    signed; on the embedded stack, which is what the sandbox runs on (`optin-bot serve`)."""
    from bot.db.migrate import migrate

    database_url = f"sqlite+aiosqlite:///{tmp_path / 'sandbox.db'}"
    await migrate(database_url)
    return await aiohttp_client(
        create_app(
            settings_for(database_url=database_url, redis_url=f"memory://{uuid.uuid4().hex}")
        )
    )


@pytest.fixture
async def any_stack_client(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> TestClient[Any, Any]:
    """The same app on each stack: embedded, and PostgreSQL with Redis."""
    database_url, redis_url = stack_urls
    return await aiohttp_client(
        create_app(settings_for(database_url=database_url, redis_url=redis_url))
    )


def services_of(client: TestClient[Any, Any]) -> Services:
    return client.server.app[SERVICES]


async def test_outside_sandbox_mode_there_is_no_sandbox(
    aiohttp_client: ClientFactory, tmp_path: Any, settings_for: Any
) -> None:
    from bot.db.migrate import migrate

    database_url = f"sqlite+aiosqlite:///{tmp_path / 'live.db'}"
    await migrate(database_url)
    client = await aiohttp_client(
        create_app(
            settings_for(
                database_url=database_url,
                redis_url="memory://live",
                access_token="live-token",
                graph_api_url="http://127.0.0.1:9/v25.0",
            )
        )
    )
    for path in ("/sandbox", "/sandbox/chat?wa_id=12025550101", "/sandbox/static/sandbox.js"):
        assert (await client.get(path)).status == 404, path
    assert (await client.post("/sandbox/api/send", json={"text": "hi"})).status == 404
    home = await client.get("/", allow_redirects=False)
    assert home.status == 302
    assert home.headers["Location"] == "/console"


async def test_home_opens_the_sandbox_and_offers_a_number_and_the_languages(
    client: TestClient[Any, Any],
) -> None:
    home = await client.get("/", allow_redirects=False)
    assert home.headers["Location"] == "/sandbox"
    page = await client.get("/sandbox")
    html = await page.text()
    assert page.status == 200
    number = re.search(r'name="wa_id" value="(\d+)"', html)
    assert number is not None and re.fullmatch(r"1\d{3}55501\d\d", number.group(1))
    for code in services_of(client).language.catalogs:
        assert f'<option value="{code}"' in html
    assert "Set-Cookie" in page.headers
    chat = await (await client.get("/sandbox/chat", params={"wa_id": CUSTOMER})).text()
    for served in (html, chat):
        # Everything the pages load is served by the app itself: no CDN, no build step.
        for link in re.findall(r'(?:src|href)="([^"]*)"', served):
            assert link.startswith(("/", "#")), link
    assert (await client.get("/sandbox/static/sandbox.js")).status == 200
    assert (await client.get("/sandbox/static/sandbox.css")).status == 200


async def test_a_bad_number_is_refused_on_the_start_page(client: TestClient[Any, Any]) -> None:
    token = csrf_token(await (await client.get("/sandbox")).text())
    answer = await client.post(
        "/sandbox/start", data={"csrf_token": token, "wa_id": "+0123", "locale": "en"}
    )
    assert answer.status == 422
    assert "6 to 15 digits" in await answer.text()
    assert await services_of(client).contacts.find("0123") is None


async def test_stop_shows_the_confirmation_and_opted_out(client: TestClient[Any, Any]) -> None:
    page = await SandboxPage.open(client, CUSTOMER)
    await page.say("STOP")
    await page.until("sb-customer", "STOP")
    bubble = await page.until("sb-bot", "You are unsubscribed: Acme Shoes will not send you")
    assert "· sandbox" in bubble
    panel = await page.panel_until('data-state="idle"', "withdrawn")
    for category in services_of(client).language.categories:
        assert status_of(panel, category.name) == "opted_out"


async def test_start_then_tapping_yes_opts_in(any_stack_client: TestClient[Any, Any]) -> None:
    page = await SandboxPage.open(any_stack_client, CUSTOMER)
    await page.say("START")
    prompt = await page.until("sb-bot", "would like to send you")
    assert 'data-kind="button_reply" data-id="optin:yes" data-title="Yes"' in prompt
    panel = await page.panel_until('data-state="awaiting_optin"')
    assert status_of(panel, "marketing") == "pending"
    await page.tap("button_reply", "optin:yes", "Yes")
    await page.until("sb-bot", "Thank you. Acme Shoes will send you")
    panel = await page.panel_until('data-state="idle"')
    assert status_of(panel, "marketing") == "opted_in"
    assert "granted" in panel


async def test_a_button_of_an_old_prompt_changes_nothing(
    any_stack_client: TestClient[Any, Any],
) -> None:
    """Each bot message the sandbox keeps has a wamid, and its buttons name it: a tap on the
    first prompt's Yes, after STOP and a second START, is answered as a question no longer open
    and grants nothing, while the second prompt's Yes still answers it.

    Bug pinned: sandbox messages had no wamid, so every tap, an old message's too, was taken as
    an answer to the open question, and the sandbox could not show a stale button at all."""
    services = services_of(any_stack_client)
    page = await SandboxPage.open(any_stack_client, CUSTOMER)
    await page.say("START")
    first = await page.until("sb-bot", "would like to send you", "optin:yes")
    first_context = choice_context(first, "optin:yes")
    assert first_context.startswith(SANDBOX_WAMID_PREFIX)
    assert f'data-wamid="{first_context}"' in first
    await page.say("STOP")
    await page.until("sb-bot", "You are unsubscribed")
    # Meta stamps messages to the second, and a START in the same second as a STOP resolves to
    # the STOP (README, "Order"): the customer writes again a second later.
    await asyncio.sleep(1.1)
    await page.say("START")

    async def second_prompt() -> str | None:
        await page.poll()
        prompts = [b for b in page.bubbles if "sb-bot" in b and "optin:yes" in b]
        return prompts[1] if len(prompts) == 2 else None

    second_context = choice_context(await eventually(second_prompt), "optin:yes")
    assert second_context not in (first_context, "")
    await page.panel_until('data-state="awaiting_optin"')
    contact = await services.contacts.find(CUSTOMER)
    assert contact is not None and contact.id is not None
    rows = len(await services.ledger.events(contact.id))

    await page.tap("button_reply", "optin:yes", "Yes", context=first_context)
    await page.until("sb-bot", "That question from Acme Shoes is no longer open")
    panel = await page.panel_until('data-state="awaiting_optin"')
    for category in services.language.categories:
        assert status_of(panel, category.name) == "pending"
    assert len(await services.ledger.events(contact.id)) == rows

    await page.tap("button_reply", "optin:yes", "Yes", context=second_context)
    panel = await page.panel_until('data-state="idle"', "granted")
    for category in services.language.categories:
        assert status_of(panel, category.name) == "opted_in"


async def test_preferences_list_rows_toggle_a_category(client: TestClient[Any, Any]) -> None:
    page = await SandboxPage.open(client, CUSTOMER)
    await page.say("PREFERENCES")
    menu = await page.until("sb-bot", "<details")
    assert "<summary>Choose</summary>" in menu
    assert 'data-kind="list_reply" data-id="pref:marketing"' in menu
    await page.tap("list_reply", "pref:marketing", "Promotions")
    await page.until("sb-bot", "Updated: Acme Shoes will send you")
    assert status_of(await page.panel_until("preferences menu"), "marketing") == "opted_in"


async def test_what_the_customer_types_is_shown_escaped(client: TestClient[Any, Any]) -> None:
    page = await SandboxPage.open(client, CUSTOMER)
    typed = "<script>alert('pwned')</script><img src=x onerror=alert(1)>"
    await page.say(typed)
    bubble = await page.until("sb-customer", "&lt;script&gt;")
    assert "<script>" not in bubble and "<img" not in bubble
    chat = await client.get("/sandbox/chat", params={"wa_id": CUSTOMER})
    html = await chat.text()
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;&lt;img" in html
    assert "<script>alert" not in html


async def test_posts_without_the_page_token_are_refused(client: TestClient[Any, Any]) -> None:
    page = await SandboxPage.open(client, CUSTOMER)
    message = {"wa_id": CUSTOMER, "type": "text", "text": "STOP"}
    attempts = [
        ({}, message),
        ({"X-CSRF-Token": "0" * 64}, message),
        ({"X-CSRF-Token": page.token, "Origin": "http://evil.example"}, message),
    ]
    for headers, body in attempts:
        answer = await client.post("/sandbox/api/send", json=body, headers=headers)
        assert answer.status == 403, headers
        assert "error" in await answer.json()
    form = await client.post("/sandbox/api/send", data=message)
    assert form.status == 403
    optin = await client.post("/sandbox/api/optin", json={"wa_id": CUSTOMER})
    assert optin.status == 403
    # The token is bound to the browser's cookie: another browser's cookie does not fit it.
    client.session.cookie_jar.clear()
    stranger = await client.post(
        "/sandbox/api/send", json=message, headers={"X-CSRF-Token": page.token}
    )
    assert stranger.status == 403
    contact = await services_of(client).contacts.find(CUSTOMER)
    assert contact is not None and contact.id is not None
    assert await services_of(client).transcript.list_for_contact(contact.id) == []


async def test_the_relayed_webhook_is_signed_and_accepted(client: TestClient[Any, Any]) -> None:
    services = services_of(client)
    assert services.settings.app_secret is not None
    page = await SandboxPage.open(client, CUSTOMER)
    answer = await page.say("hello")
    assert answer["webhook"] == {"status": "accepted", "events": 1, "duplicates": 0}
    assert answer["wamid"].startswith("wamid.")
    await page.until("sb-customer", "hello", answer["wamid"])
    # The same kind of body without the signature is refused by /webhook: it was checked.
    unsigned = await client.post(
        "/webhook", data=dumps({"object": "whatsapp_business_account", "entry": []})
    )
    assert unsigned.status == 401


async def test_no_javascript_forms_redirect_back_to_the_chat(client: TestClient[Any, Any]) -> None:
    page = await SandboxPage.open(client, CUSTOMER)
    answer = await client.post(
        "/sandbox/api/send",
        data={"csrf_token": page.token, "wa_id": CUSTOMER, "type": "text", "text": "HELP"},
    )
    assert answer.status == 200
    assert answer.url.path == "/sandbox/chat"
    await page.until("sb-bot", "This is Acme Shoes on WhatsApp.")


async def test_invalid_messages_are_refused(client: TestClient[Any, Any]) -> None:
    page = await SandboxPage.open(client, CUSTOMER)
    for body in (
        {"type": "text", "text": "  "},
        {"type": "sticker"},
        {"type": "button_reply", "title": "Yes"},
        {"type": "text", "text": "x" * 4097},
        {"type": "text", "text": "hi", "wa_id": "12ab"},
    ):
        status, answer = await page.post("/sandbox/api/send", body)
        assert status == 422, body
        assert answer["error"]
    state = await client.get("/sandbox/api/state", params={"wa_id": "nope"})
    assert state.status == 422


async def test_business_double_optin_goes_through_the_api(client: TestClient[Any, Any]) -> None:
    page = await SandboxPage.open(client, CUSTOMER)
    # Before the customer has written, the window is closed and there is no OPTIN_TEMPLATE:
    # the business API refuses, and the sandbox says why.
    status, refused = await page.post("/sandbox/api/optin", {"categories": ["marketing"]})
    assert status == 422
    assert "OPTIN_TEMPLATE" in refused["error"]
    await page.say("hello")
    await page.until("sb-customer", "hello")
    status, answer = await page.post("/sandbox/api/optin", {"categories": ["marketing"]})
    assert status == 200, answer
    assert answer["contacts"] == 1 and answer["requests"][0].startswith("request:")
    await page.until("sb-bot", "would like to send you promotions", "optin:yes")
    await page.tap("button_reply", "optin:yes", "Yes")
    panel = await page.panel_until("double opt in", 'data-state="idle"')
    assert status_of(panel, "marketing") == "opted_in"
    contact = await services_of(client).contacts.find(CUSTOMER)
    assert contact is not None and contact.id is not None
    rows = await services_of(client).ledger.events(contact.id)
    granted = [r for r in rows if r.action == "granted"]
    assert json.loads(granted[-1].evidence_json)["requested_by"] == "sandbox business panel"


async def test_business_refuses_unknown_or_no_categories(client: TestClient[Any, Any]) -> None:
    page = await SandboxPage.open(client, CUSTOMER)
    for categories in ([], ["lottery"]):
        status, answer = await page.post("/sandbox/api/optin", {"categories": categories})
        assert status == 422, categories
        assert answer["error"]


async def test_reconsent_campaign_reaches_every_sandbox_customer(
    client: TestClient[Any, Any],
) -> None:
    first = await SandboxPage.open(client, CUSTOMER)
    second = await SandboxPage.open(client, "12025550102", locale="es")
    never = await SandboxPage.open(client, "12025550103")
    for page, yes in ((first, "Yes"), (second, "Sí")):
        await page.say("START")
        await page.until("sb-bot", "optin:yes")
        await page.tap("button_reply", "optin:yes", yes)
        await page.panel_until("granted")
    status, refused = await first.post(
        "/sandbox/api/reconsent", {"categories": ["marketing"], "policy_version": "two"}
    )
    assert status == 422
    assert "policy_version" in refused["error"]
    status, answer = await first.post(
        "/sandbox/api/reconsent", {"categories": ["marketing"], "policy_version": "2"}
    )
    assert status == 200, answer
    assert answer["contacts"] == 3
    assert answer["requests"][0].startswith("campaign:")
    for page in (first, second):
        template = await page.until("sb-bot", "Template <code>reconsent_request</code>")
        assert 'data-kind="button" data-id="reconsent:yes" data-title="Yes"' in template
        await page.panel_until('data-state="awaiting_reconsent"')
    await second.tap("button", "reconsent:yes", "Yes")
    await second.panel_until('data-state="idle"', "reconfirmed")
    await never.poll()
    assert never.bubbles == []
    assert 'data-state="idle"' in never.panel_html

    async def reconfirmed() -> bool:
        contact = await services_of(client).contacts.find("12025550102")
        assert contact is not None and contact.id is not None
        view = (await services_of(client).ledger.current(contact.id)).get("marketing")
        return view is not None and view.policy_version == "2"

    assert await eventually(reconfirmed)


async def test_the_business_panel_sends_the_api_token_when_one_is_set(
    aiohttp_client: ClientFactory, tmp_path: Any, settings_for: Any
) -> None:
    from bot.db.migrate import migrate

    database_url = f"sqlite+aiosqlite:///{tmp_path / 'token.db'}"
    await migrate(database_url)
    client = await aiohttp_client(
        create_app(
            settings_for(
                database_url=database_url,
                redis_url=f"memory://{uuid.uuid4().hex}",
                api_token="business-token",
            )
        )
    )
    assert (await client.post("/v1/optins", json={})).status == 401
    page = await SandboxPage.open(client, CUSTOMER)
    await page.say("hello")
    await page.until("sb-customer", "hello")
    status, answer = await page.post("/sandbox/api/optin", {"categories": ["reminders"]})
    assert status == 200, answer
    await page.until("sb-bot", "would like to send you reminders")

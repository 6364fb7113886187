"""`POST /v1/messages`: every marketing message carries a way out.

In sandbox mode the templates are the sandbox's list (live, with WHATSAPP_BUSINESS_ACCOUNT_ID:
tests/bot/campaigns/test_way_out.py, on the fake Cloud API's list).
"""

from __future__ import annotations

from typing import Any

from bot.appkeys import SERVICES
from bot.message_templates.sandbox import WITHOUT_OPT_OUT
from tests.bot.api.apicalls import (
    AUTH,
    Client,
    ClientFactory,
    api_client,
    optin_body,
    outbound,
    post,
    say,
    window_opens,
)

CONTACT = "34612345678"


def _metrics(client: Client) -> str:
    return str(client.server.app[SERVICES].metrics.render().decode())


async def test_the_sandbox_refuses_its_marketing_template_without_a_way_out(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    assert (await post(client, "/v1/optins", optin_body()))[0] == 201
    send = {"to": CONTACT, "category": "marketing"}

    status, data = await post(
        client, "/v1/messages", {**send, "template": {"name": WITHOUT_OPT_OUT, "language": "en"}}
    )
    assert (status, data["error"]) == (422, "template_without_opt_out"), data
    assert WITHOUT_OPT_OUT in data["detail"] and "footer" in data["detail"]

    status, data = await post(
        client, "/v1/messages", {**send, "template": {"name": "spring_sale", "language": "fr"}}
    )
    assert status == 202, data
    # The sandbox's list is an example: a template it does not name goes, counted.
    status, data = await post(
        client, "/v1/messages", {**send, "template": {"name": "mystery_promo", "language": "en"}}
    )
    assert status == 202, data
    assert 'optin_templates_opt_out_unknown_total{template="mystery_promo"} 1.0' in _metrics(client)
    rows = await outbound(client, CONTACT, 2)
    assert len(rows) == 2  # the refused template was never queued


async def test_a_marketing_text_gets_the_line_in_the_contacts_language_once(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    assert (await post(client, "/v1/optins", optin_body(locale="es")))[0] == 201
    await say(client, CONTACT, "hola, una pregunta")
    await window_opens(client, CONTACT)

    text = {"to": CONTACT, "category": "marketing"}
    assert (await post(client, "/v1/messages", {**text, "text": "¡Rebajas hoy!"}))[0] == 202
    written = "Sale today. Reply STOP to unsubscribe."
    assert (await post(client, "/v1/messages", {**text, "text": written}))[0] == 202
    status, _ = await post(
        client, "/v1/messages", {**text, "category": "order_updates", "text": "Enviado."}
    )
    assert status == 202

    rows = await outbound(client, CONTACT, 3)
    texts = [row["text"] for row in rows[-3:]]
    assert texts == [
        "¡Rebajas hoy!\n\nResponde BAJA para darte de baja.",
        written,
        "Enviado.",
    ]

    status, data = await post(client, "/v1/messages", {**text, "text": "x" * 4090})
    assert (status, data["error"]) == (422, "invalid_request")
    assert "Responde BAJA" in data["detail"]


async def test_a_marketing_text_gets_the_businesss_own_line_once_it_is_overridden(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    """Regression: the line came from the locale files as the process started, so a business
    that reworded it through `/v1/keywords` still saw the old line on its marketing texts."""
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    line = "Escribe BAJA si no quieres más ofertas."
    overlay = f'[es.replies]\nopt_out_footer = "{line}"\n'
    response = await client.put(
        "/v1/keywords",
        data=overlay.encode(),
        headers={**AUTH, "Content-Type": "application/toml"},
    )
    assert response.status == 200, await response.text()
    assert (await post(client, "/v1/optins", optin_body(locale="es")))[0] == 201
    await say(client, CONTACT, "hola, una pregunta")
    await window_opens(client, CONTACT)

    status, _ = await post(
        client, "/v1/messages", {"to": CONTACT, "category": "marketing", "text": "¡Rebajas hoy!"}
    )

    assert status == 202
    rows = await outbound(client, CONTACT, 1)
    assert rows[-1]["text"] == f"¡Rebajas hoy!\n\n{line}"

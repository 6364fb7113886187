"""`POST /v1/messages`: business messages go only where the consent gate lets them."""

from __future__ import annotations

from typing import Any

from tests.bot.api.apicalls import (
    ClientFactory,
    api_client,
    get,
    optin_body,
    outbound,
    post,
    say,
    status_becomes,
    window_opens,
)

PROMO = {"name": "spring_sale", "language": "es"}


async def test_an_opted_in_contact_gets_templates_not_texts_outside_the_window(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    assert (await post(client, "/v1/optins", optin_body()))[0] == 201
    template = {
        **PROMO,
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
    }
    status, data = await post(
        client,
        "/v1/messages",
        {"to": "+34 612 34 56 78", "category": "marketing", "template": template},
    )
    assert status == 202, data
    assert (data["status"], data["reason"], data["kind"]) == ("queued", "opted_in", "template")
    assert data["contact"]["wa_id"] == "34612345678"

    (sent,) = await outbound(client, "34612345678")
    assert (sent["message_id"], sent["kind"]) == (data["message_id"], "template")

    status, data = await post(
        client, "/v1/messages", {"to": "34612345678", "category": "marketing", "text": "Hi!"}
    )
    assert (status, data["error"]) == (409, "window_closed")
    assert "template" in data["detail"]


async def test_refusals_carry_the_gate_reason(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    await say(client, "34612345678", "STOP")
    await status_becomes(client, "34612345678", "marketing", "opted_out")
    await say(client, "34699999999", "where is my order?")
    await window_opens(client, "34699999999")

    cases = [
        ({"to": "34612345678", "category": "marketing", "template": PROMO}, "opted_out"),
        ({"to": "34699999999", "category": "marketing", "template": PROMO}, "no_consent"),
        ({"to": "34699999999", "category": "horoscopes", "text": "Hi"}, "unknown_category"),
    ]
    for body, reason in cases:
        status, data = await post(client, "/v1/messages", body)
        assert (status, data["error"]) == (409, reason), data
        assert data["detail"]

    # A reply in the service window, of a non-marketing category, needs no opt-in.
    status, data = await post(
        client,
        "/v1/messages",
        {"to": "34699999999", "category": "order_updates", "text": "It ships today."},
    )
    assert (status, data["reason"]) == (202, "service_window")
    rows = await outbound(client, "34699999999")
    assert rows[-1]["text"] == "It ships today."

    status, data = await post(
        client, "/v1/messages", {"to": "34600000000", "category": "marketing", "text": "Hi"}
    )
    assert (status, data["error"]) == (404, "unknown_contact")


async def test_an_idempotency_key_makes_a_retry_safe(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    await post(client, "/v1/optins", optin_body())
    body = {"to": "34612345678", "category": "marketing", "template": PROMO}
    key = {"Idempotency-Key": "campaign-7-contact-1"}
    first = await post(client, "/v1/messages", body, key)
    again = await post(client, "/v1/messages", body, key)
    assert first[0] == again[0] == 202
    assert again[1]["message_id"] == first[1]["message_id"] and again[1]["replayed"] is True
    other = await post(client, "/v1/messages", {**body, "category": "reminders"}, key)
    assert (other[0], other[1]["error"]) == (409, "idempotency_conflict")
    # Without a key, two requests are two messages.
    unkeyed = [await post(client, "/v1/messages", body) for _ in range(2)]
    assert unkeyed[0][1]["message_id"] != unkeyed[1][1]["message_id"]

    rows = await outbound(client, "34612345678", 3)
    assert len(rows) == 3
    bad_key = await post(client, "/v1/messages", body, {"Idempotency-Key": "has spaces"})
    assert (bad_key[0], bad_key[1]["error"]) == (422, "invalid_request")


async def test_message_bodies_are_validated(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    await post(client, "/v1/optins", optin_body())
    base = {"to": "34612345678", "category": "marketing"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**base}, "exactly one of `text` or `template`"),
        ({**base, "text": "a", "template": PROMO}, "exactly one of `text` or `template`"),
        ({**base, "text": "x" * 4097}, "`text` must be at most 4096 characters"),
        ({**base, "text": "   "}, "`text` must not be blank"),
        ({**base, "template": {"name": "Spring Sale", "language": "es"}}, "`template.name`"),
        ({**base, "template": {"name": "promo", "language": "spanish"}}, "`template.language`"),
        (
            {**base, "template": {**PROMO, "components": [{"type": "button"}]}},
            "`template.components.0.sub_type` is required",
        ),
        ({**base, "template": {**PROMO, "components": ["body"]}}, "`template.components.0`"),
        ({**base, "text": "hi", "priority": "high"}, "`priority` unknown field"),
        ({"to": "not a number", "category": "marketing", "text": "hi"}, "neither"),
    ]
    for body, detail in cases:
        status, data = await post(client, "/v1/messages", body)
        assert status == 422, (body, data)
        assert data["error"] in ("invalid_request", "invalid_contact")
        assert detail in data["detail"], data
    meta_style = {**PROMO, "language": {"code": "es", "policy": "deterministic"}}
    status, _ = await post(client, "/v1/messages", {**base, "template": meta_style})
    assert status == 202
    assert (await client.post("/v1/messages", json={**base, "text": "hi"})).status == 401


async def test_a_contact_by_business_scoped_id(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    await post(client, "/v1/optins", optin_body(contact="US.13491208655302741918"))
    status, data = await post(
        client,
        "/v1/messages",
        {"to": "US.13491208655302741918", "category": "marketing", "template": PROMO},
    )
    assert status == 202, data
    _, transcript = await get(client, "/v1/contacts/US.13491208655302741918/transcript")
    assert [e["message_id"] for e in transcript["entries"]] == [data["message_id"]]

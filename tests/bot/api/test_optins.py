"""`POST /v1/optins`: recording consent given outside WhatsApp, refusing what is not consent."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.api.identifiers import IdentifierError, parse_contact
from bot.api.optin_rules import names_whatsapp
from tests.bot.api.apicalls import (
    AUTH,
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

GENERIC_WORDING = "Yes, keep me informed about offers from Acme Shoes."


async def test_an_optin_is_recorded_with_its_evidence(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    status, data = await post(
        client,
        "/v1/optins",
        optin_body(categories=["marketing", "reminders"], locale="es", policy_version="2025-01"),
    )
    assert status == 201, data
    assert data["status"] == "recorded" and data["replayed"] is False
    assert data["contact"]["wa_id"] == "34612345678"
    assert data["contact"]["locale"] == "es"
    assert {c: v["status"] for c, v in data["categories"].items()} == {
        "marketing": "opted_in",
        "reminders": "opted_in",
    }
    assert data["generic_wording"] is False and len(data["event_ids"]) == 2

    _, consent = await get(client, "/v1/contacts/34612345678/consent")
    assert consent["categories"]["marketing"]["source"] == "website"
    assert consent["categories"]["marketing"]["method"] == "api_record"
    assert consent["categories"]["marketing"]["policy_version"] == "2025-01"
    assert consent["categories"]["order_updates"]["status"] == "none"

    _, ledger = await get(client, "/v1/contacts/34612345678/ledger")
    assert ledger["verified"] is True
    marketing = next(e for e in ledger["events"] if e["category"] == "marketing")
    assert marketing["action"] == "granted" and marketing["business_name"] == "Acme Shoes"
    assert datetime.fromisoformat(marketing["occurred_at"]) == datetime(
        2025, 3, 1, 9, 15, tzinfo=UTC
    )
    evidence = marketing["evidence"]
    assert evidence["wording"] == optin_body()["wording"]
    assert evidence["ip"] == "203.0.113.7" and evidence["document_ref"] == "form-7"
    assert evidence["contact_as_given"] == "+34 612 34 56 78" and evidence["region"] == "ES"
    assert "generic_wording" not in evidence


async def test_the_same_optin_twice_is_written_once(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    first = await post(client, "/v1/optins", optin_body())
    # The same opt-in, the number written differently: the same request.
    second = await post(client, "/v1/optins", optin_body(contact="0034612345678"))
    assert first[0] == second[0] == 201
    assert second[1]["replayed"] is True
    assert second[1]["event_ids"] == first[1]["event_ids"]

    keyed = optin_body(captured_at="2025-03-02T10:00:00Z")
    headers = {"Idempotency-Key": "form-submission-81"}
    third = await post(client, "/v1/optins", keyed, headers)
    again = await post(client, "/v1/optins", keyed, headers)
    assert (third[0], third[1]["replayed"], again[0], again[1]["replayed"]) == (
        201,
        False,
        201,
        True,
    )
    assert again[1]["event_ids"] == third[1]["event_ids"]
    conflict = await post(client, "/v1/optins", optin_body(source="paper"), headers)
    assert conflict[0] == 409 and conflict[1]["error"] == "idempotency_conflict"

    _, ledger = await get(client, "/v1/contacts/34612345678/ledger")
    assert len(ledger["events"]) == 2


#: (change to a good opt-in, the refusal's code).
REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"pre_ticked": True}, "pre_ticked"),
    ({"required_for_signup": True}, "required_for_signup"),
    ({"business_name": "  "}, "no_business_name"),
    ({"business_name": None}, "no_business_name"),
    ({"business_name": "__absent__"}, "no_business_name"),
    ({"categories": ["marketing", "horoscopes"]}, "unknown_category"),
    ({"contact": "+34 12"}, "invalid_contact"),
    ({"contact": "hello"}, "invalid_contact"),
    ({"contact": "ZZ.12345"}, "invalid_contact"),
    ({"captured_at": "2025-03-01T10:15:00"}, "invalid_captured_at"),
    ({"captured_at": "yesterday"}, "invalid_captured_at"),
    ({"locale": "xx"}, "unknown_locale"),
    ({"wording": GENERIC_WORDING}, "generic_wording"),
    ({"source": "whatsapp_thread"}, "invalid_request"),
    ({"colour": "blue"}, "invalid_request"),
    ({"evidence": {"ip": "not-an-ip"}}, "invalid_request"),
    ({"evidence": {"wording": "other"}}, "invalid_request"),
    ({"evidence": {"nested": {"a": 1}}}, "invalid_request"),
]


async def test_what_is_not_consent_is_refused(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    for change, code in REFUSALS:
        body = {k: v for k, v in optin_body(**change).items() if v != "__absent__"}
        status, data = await post(client, "/v1/optins", body)
        assert (status, data["error"]) == (422, code), (change, data)
        assert data["detail"]
    _, unknown_field = await post(client, "/v1/optins", optin_body(colour="blue"))
    assert unknown_field["detail"] == "`colour` unknown field"
    # Nothing was recorded, and no contact was created.
    assert (await get(client, "/v1/contacts/34612345678/consent"))[0] == 404


async def test_captured_at_in_the_future_is_refused(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    soon = datetime.now(UTC) + timedelta(minutes=2)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert (await post(client, "/v1/optins", optin_body(captured_at=soon.isoformat())))[0] == 201
    status, data = await post(
        client, "/v1/optins", optin_body(captured_at=later.isoformat(), contact="+34612345679")
    )
    assert (status, data["error"]) == (422, "invalid_captured_at")


async def test_malformed_requests_are_clear_errors(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    cases = [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ({"data": b"contact=1", "headers": {"Content-Type": "text/plain"}}, 415),
        ({"data": b"[1, 2]", "headers": {"Content-Type": "application/json"}}, 422),
        ({"data": b"{}" + b" " * 70_000, "headers": {"Content-Type": "application/json"}}, 413),
    ]
    for kwargs, expected in cases:
        headers = {**AUTH, **kwargs["headers"]}  # type: ignore[dict-item]
        response = await client.post("/v1/optins", data=kwargs["data"], headers=headers)
        body = await response.json()
        assert response.status == expected, body
        assert set(body) == {"error", "detail"}
    assert (await client.post("/v1/optins", json=optin_body())).status == 401


async def test_generic_wording_outside_the_eu_is_accepted_and_flagged(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    status, data = await post(
        client, "/v1/optins", optin_body(contact="+1 202 555 0143", wording=GENERIC_WORDING)
    )
    assert status == 201 and data["generic_wording"] is True
    _, ledger = await get(client, "/v1/contacts/12025550143/ledger")
    assert ledger["events"][0]["evidence"]["generic_wording"] is True
    assert ledger["events"][0]["evidence"]["region"] == "US"
    # An EU business-scoped user id is an EU contact.
    status, data = await post(
        client, "/v1/optins", optin_body(contact="DE.8811", wording=GENERIC_WORDING)
    )
    assert (status, data["error"]) == (422, "generic_wording")


async def test_generic_wording_in_the_eu_when_the_business_accepts_it(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(
        aiohttp_client, stack_urls, settings_for, generic_optin_policy="accept"
    )
    status, data = await post(client, "/v1/optins", optin_body(wording=GENERIC_WORDING))
    assert status == 201 and data["generic_wording"] is True
    _, ledger = await get(client, "/v1/contacts/34612345678/ledger")
    assert ledger["events"][0]["evidence"]["generic_wording"] is True


async def test_a_contact_known_only_by_a_business_scoped_id(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    status, data = await post(client, "/v1/optins", optin_body(contact="US.13491208655302741918"))
    assert status == 201
    assert (data["contact"]["wa_id"], data["contact"]["user_id"]) == (
        None,
        "US.13491208655302741918",
    )
    _, consent = await get(client, "/v1/contacts/US.13491208655302741918/consent")
    assert consent["categories"]["marketing"]["status"] == "opted_in"


async def test_a_business_record_never_lifts_the_customers_own_stop(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    """Regression (issue 9, item 2): a business-side grant voided a customer's STOP."""
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    await say(client, "34612345678", "STOP", hours_ago=1)
    await status_becomes(client, "34612345678", "marketing", "opted_out")
    # Neither an opt-in captured before the STOP, nor one captured after it, undoes it...
    status, data = await post(client, "/v1/optins", optin_body())
    assert (status, data["error"]) == (409, "opted_out")
    now = datetime.now(UTC).isoformat()
    status, data = await post(client, "/v1/optins", optin_body(captured_at=now))
    assert (status, data["error"]) == (409, "opted_out")
    assert "themselves" in data["detail"] and "double_opt_in" in data["detail"]
    _, consent = await get(client, "/v1/contacts/34612345678/consent")
    assert consent["categories"]["marketing"]["status"] == "opted_out"
    # ...only the customer's own word does.
    await say(client, "34612345678", "START")
    await say(client, "34612345678", "YES")
    await status_becomes(client, "34612345678", "marketing", "opted_in")


async def test_double_optin_asks_in_the_chat_and_yes_grants(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(aiohttp_client, stack_urls, settings_for)
    await say(client, "34612345678", "hello")
    await window_opens(client, "34612345678")
    body = optin_body(double_opt_in=True, wording="Send me offers, please")
    status, data = await post(client, "/v1/optins", body)
    assert status == 202, data
    assert (data["status"], data["prompt"]) == ("pending_confirmation", "interactive")
    assert (await post(client, "/v1/optins", body))[0] == 202  # asked once, not twice

    (prompt,) = await outbound(client, "34612345678")
    assert prompt["kind"] == "interactive" and "Acme Shoes" in prompt["text"]
    await status_becomes(client, "34612345678", "marketing", "pending")
    await say(client, "34612345678", "YES")
    consent = await status_becomes(client, "34612345678", "marketing", "opted_in")
    assert consent["categories"]["marketing"]["method"] == "double_opt_in"
    rows = await outbound(client, "34612345678", 2)
    assert len([r for r in rows if r["kind"] == "interactive"]) == 1


async def test_double_optin_outside_the_window_needs_a_template(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    plain = await api_client(aiohttp_client, stack_urls, settings_for)
    status, data = await post(plain, "/v1/optins", optin_body(double_opt_in=True))
    assert (status, data["error"]) == (422, "template_required")


async def test_double_optin_outside_the_window_with_the_optin_template(
    stack_urls: tuple[str, str], aiohttp_client: ClientFactory, settings_for: Any
) -> None:
    client = await api_client(
        aiohttp_client, stack_urls, settings_for, optin_template="optin_confirm"
    )
    status, data = await post(client, "/v1/optins", optin_body(double_opt_in=True))
    assert (status, data["prompt"]) == (202, "template")
    (prompt,) = await outbound(client, "34612345678")
    assert prompt["kind"] == "template"

    # Someone who opted out, and is not writing to us now, is not asked again.
    await say(client, "34699999999", "STOP", hours_ago=30)
    await status_becomes(client, "34699999999", "marketing", "opted_out")
    status, data = await post(
        client, "/v1/optins", optin_body(contact="+34699999999", double_opt_in=True)
    )
    assert (status, data["error"]) == (409, "opted_out")


@pytest.mark.parametrize(
    ("text", "wa_id", "user_id", "region"),
    [
        ("+34 612 34 56 78", "34612345678", None, "ES"),
        ("0034-612-345-678", "34612345678", None, "ES"),
        ("34612345678", "34612345678", None, "ES"),
        ("+1 (202) 555-0143", "12025550143", None, "US"),
        ("+49 170 1234567", "491701234567", None, "DE"),
        ("US.13491208655302741918", None, "US.13491208655302741918", "US"),
    ],
)
def test_contact_identifiers_are_normalised(
    text: str, wa_id: str | None, user_id: str | None, region: str
) -> None:
    parsed = parse_contact(text)
    assert (parsed.wa_id, parsed.user_id, parsed.region) == (wa_id, user_id, region)
    assert parsed.in_eu_eea is (region in {"ES", "DE"})


@pytest.mark.parametrize("text", ["+34 12", "", "12345678901234567", "call me", "XX.123", "us.1"])
def test_what_is_not_a_contact_identifier(text: str) -> None:
    with pytest.raises(IdentifierError):
        parse_contact(text)


@pytest.mark.parametrize(
    ("wording", "named"),
    [
        ("Send me offers on WhatsApp", True),
        ("Acepto recibir ofertas por Whats App", True),
        ("أوافق على تلقي العروض عبر واتساب", True),
        ("मैं व्हाट्सएप पर ऑफ़र पाने के लिए सहमत हूं", True),
        ("Keep me informed about offers", False),
        ("Send me offers by SMS", False),
    ],
)
def test_a_wording_names_whatsapp_or_not(wording: str, named: bool) -> None:
    assert names_whatsapp(wording) is named


async def test_the_optin_template_language_fallback_logs_its_reason(
    stack_urls: tuple[str, str],
    aiohttp_client: ClientFactory,
    settings_for: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A locale TEMPLATE_LANGUAGES does not list gets the locale code as the template language,
    and the log says so (once per locale), so an operator whose templates are approved as
    `fr_FR` sees why Meta refused `fr`."""
    client = await api_client(
        aiohttp_client,
        stack_urls,
        settings_for,
        optin_template="optin_confirm",
        template_languages=(("es", "es_MX"),),
    )
    with caplog.at_level(logging.INFO, logger="bot.conversations"):
        for contact, locale in (("+34612345678", "es"), ("+33612345678", "fr")):
            body = optin_body(contact=contact, double_opt_in=True, locale=locale)
            assert (await post(client, "/v1/optins", body))[0] == 202
        await outbound(client, "33612345678")
        await outbound(client, "34612345678")
    reasons = [r.getMessage() for r in caplog.records if "OPTIN_TEMPLATE" in r.getMessage()]
    assert len(reasons) == 1, reasons
    assert "locale fr in language fr" in reasons[0]
    assert "TEMPLATE_LANGUAGES lists no template language for fr" in reasons[0]

"""`POST /v1/optins`: consent a customer gave outside WhatsApp, recorded as ledger evidence.

A business collects opt-ins on its website, by SMS, on paper, at the till or through an ad, and
must later prove each one: who, for what, where, the exact wording shown, under which business
name, when. This endpoint refuses what is not consent (a pre-ticked box, an opt-in made a
condition of signing up, no business name, a category the business does not have) and writes
the rest to the contact's ledger as `granted` rows whose evidence holds everything the business
sent (the rules are in `bot.api.optin_rules`). An opt-in captured after the contact opted out
lifts the opt-out, and its evidence says so; one captured before it does not. With
`double_opt_in` nothing is granted: the contact gets the chat confirmation, and only their YES
grants.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from bot.api.contacts import contact_json
from bot.api.idempotency import OPENAPI_PARAMETER as IDEMPOTENCY_PARAMETER
from bot.api.idempotency import claim
from bot.api.openapi import (
    COMMON_SCHEMAS,
    error_responses,
    json_request_body,
    json_response,
    ref,
)
from bot.api.optin_rules import (
    OFF_WHATSAPP_SOURCES,
    RESERVED_EVIDENCE_KEYS,
    CheckedOptin,
    check_optin,
)
from bot.api.validation import BODY_ERROR_STATUSES, ApiProblem, BodySchema, answers_problems
from bot.appkeys import SERVICES
from bot.db.ledger import ConsentChange
from bot.db.ledger_append import EvidenceValue
from bot.db.models import Contact
from bot.services import Services
from flows import events as ev
from flows.consent import ConsentAction, ConsentStatus, Method
from flows.consent_order import CUSTOMER_SOURCES

OPENAPI_SCHEMAS: dict[str, Any] = {
    "OptinEvidence": {
        "type": "object",
        "description": "What proves the opt-in; any further scalar fields are kept as given.",
        "maxProperties": 50,
        "propertyNames": {
            "pattern": "^[A-Za-z][A-Za-z0-9_.-]{0,63}$",
            "not": {"enum": list(RESERVED_EVIDENCE_KEYS)},
        },
        "properties": {
            "ip": {
                "type": "string",
                "description": "IPv4 or IPv6 address the form was sent from.",
                "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
            },
            "user_agent": {"type": "string", "maxLength": 1000},
            "document_ref": {
                "type": "string",
                "maxLength": 500,
                "description": "Where the signed form, recording or screenshot is kept.",
            },
        },
        "additionalProperties": {
            "type": ["string", "number", "boolean", "null"],
            "maxLength": 2000,
        },
    },
    "OptinRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "contact",
            "categories",
            "source",
            "wording",
            "business_name",
            "captured_at",
            "evidence",
        ],
        "properties": {
            "contact": {
                "type": "string",
                "minLength": 1,
                "maxLength": 80,
                "description": "Phone number in E.164 (`+34 612 34 56 78`), the wa_id digits, "
                "or a business-scoped user id (`CC.digits`).",
                "examples": ["+34612345678", "US.13491208655302741918"],
            },
            "categories": {
                "type": "array",
                "minItems": 1,
                "maxItems": 50,
                "uniqueItems": True,
                "items": {"type": "string", "minLength": 1, "maxLength": 64},
                "examples": [["marketing"]],
            },
            "source": {"type": "string", "enum": [s.value for s in OFF_WHATSAPP_SOURCES]},
            "wording": {
                "type": "string",
                "minLength": 1,
                "maxLength": 4000,
                "description": "The exact text the customer agreed to. For a contact in the "
                "EU/EEA it must name WhatsApp (unless GENERIC_OPTIN_POLICY=accept).",
            },
            "business_name": {
                "type": "string",
                "maxLength": 200,
                "description": "The business name shown to the customer.",
            },
            "captured_at": {
                "type": "string",
                "format": "date-time",
                "description": "When the customer agreed, with a time zone; not in the future.",
            },
            "evidence": ref("OptinEvidence"),
            "locale": {
                "type": "string",
                "pattern": "^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$",
                "description": "The contact's language (a bundled locale, e.g. `es`, `pt_BR`).",
            },
            "policy_version": {"type": "string", "minLength": 1, "maxLength": 64},
            "pre_ticked": {
                "type": "boolean",
                "default": False,
                "description": "The box was ticked in advance: refused (not consent).",
            },
            "required_for_signup": {
                "type": "boolean",
                "default": False,
                "description": "Signing up was impossible without it: refused (not free).",
            },
            "double_opt_in": {
                "type": "boolean",
                "default": False,
                "description": "Ask the contact to confirm in the chat instead of granting.",
            },
        },
    },
    "OptinRecorded": {
        "type": "object",
        "required": ["status", "contact", "categories", "event_ids", "replayed"],
        "properties": {
            "status": {"const": "recorded"},
            "contact": ref("Contact"),
            "categories": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"type": "string", "enum": [s.value for s in ConsentStatus]},
                        "since": {"type": ["string", "null"], "format": "date-time"},
                    },
                },
            },
            "event_ids": {"type": "array", "items": {"type": "integer"}},
            "replayed": {
                "type": "boolean",
                "description": "The same opt-in was recorded before; nothing new was written.",
            },
            "generic_wording": {
                "type": "boolean",
                "description": "The wording does not name WhatsApp (flagged in the evidence).",
            },
            "lifted_opt_out": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Categories the contact had opted out of, opted in again now.",
            },
        },
    },
    "OptinPending": {
        "type": "object",
        "required": ["status", "contact", "categories", "request_id"],
        "properties": {
            "status": {"const": "pending_confirmation"},
            "contact": ref("Contact"),
            "categories": {"type": "array", "items": {"type": "string"}},
            "request_id": {"type": "string"},
            "prompt": {
                "type": "string",
                "enum": ["interactive", "template"],
                "description": "How the confirmation is asked: in the 24-hour window with "
                "buttons, else with the OPTIN_TEMPLATE.",
            },
        },
    },
}

_WEBSITE_FORM: Final[dict[str, Any]] = {
    "contact": "+34 612 34 56 78",
    "categories": ["marketing"],
    "source": "website",
    "wording": "Yes, Example Business may send me offers on WhatsApp. Reply STOP to opt out.",
    "business_name": "Example Business",
    "captured_at": "2025-03-01T10:15:00+01:00",
    "evidence": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "document_ref": "form-7"},
}
_EXAMPLES: Final = {
    "website_form": _WEBSITE_FORM,
    "double_opt_in": {
        **_WEBSITE_FORM,
        "contact": "US.13491208655302741918",
        "categories": ["marketing", "reminders"],
        "source": "qr_code",
        "evidence": {"document_ref": "poster-12"},
        "locale": "en",
        "double_opt_in": True,
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/optins": {
        "post": {
            "operationId": "recordOptin",
            "summary": "Record an opt-in captured outside WhatsApp, or start a double opt-in",
            "description": (
                "Refusals (422): `pre_ticked`, `required_for_signup`, `no_business_name`, "
                "`unknown_category`, `generic_wording` (EU/EEA contact, wording without "
                "WhatsApp), `invalid_contact`, `invalid_captured_at`, `unknown_locale`, "
                "`template_required` (double opt-in outside the window without OPTIN_TEMPLATE), "
                "`invalid_request`. 409: `opted_out` (the contact opted out after `captured_at`; "
                "or a double opt-in to a contact who opted out and is not in the window), "
                "`idempotency_conflict`. An opt-in captured after an opt-out lifts it; the "
                "evidence says so."
            ),
            "tags": ["optins"],
            "parameters": [IDEMPOTENCY_PARAMETER],
            "requestBody": json_request_body(ref("OptinRequest"), examples=_EXAMPLES),
            "responses": {
                "201": json_response(
                    "Recorded: the categories are opted in.", ref("OptinRecorded")
                ),
                "202": json_response(
                    "Double opt-in started: the contact is asked to confirm.", ref("OptinPending")
                ),
                **error_responses(409, *BODY_ERROR_STATUSES),
            },
        }
    }
}

BODY: Final = BodySchema(
    {**COMMON_SCHEMAS, **OPENAPI_SCHEMAS},
    "OptinRequest",
    missing_codes={"business_name": "no_business_name"},
)


def _since(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


async def _record(services: Services, optin: CheckedOptin, key: str) -> web.Response:
    identifier = optin.identifier
    contact = await services.contacts.resolve(
        wa_id=identifier.wa_id, user_id=identifier.user_id, locale=optin.locale
    )
    assert contact.id is not None
    before = await services.ledger.current(contact.id)
    lifted = [
        c for c in optin.categories if c in before and before[c].status is ConsentStatus.OPTED_OUT
    ]
    for category in lifted:
        since = before[category].since
        if before[category].source in CUSTOMER_SOURCES:
            # The customer's own STOP: no business record lifts it (flows.consent_order).
            raise ApiProblem(
                409,
                "opted_out",
                f"the customer opted out of {category} themselves"
                + (f" at {since.isoformat()}" if since else "")
                + ": a business record never lifts that; ask them in the chat "
                "(double_opt_in) or let them write START",
            )
        if since is not None and since > optin.captured_at:
            raise ApiProblem(
                409,
                "opted_out",
                f"the contact opted out of {category} at {since.isoformat()}, after this "
                "opt-in was captured: only an opt-in given after the opt-out lifts it",
            )
    lifting: dict[str, EvidenceValue] = {"previous_status": "opted_out", "lifts_opt_out": True}
    changes = [
        ConsentChange(
            category=category,
            action=ConsentAction.GRANTED,
            source=optin.source,
            method=Method.API_RECORD,
            evidence={**optin.evidence, **lifting} if category in lifted else optin.evidence,
            business_name=optin.business_name,
            policy_version=optin.policy_version,
            occurred_at=optin.captured_at,
            event_key=f"api:optin:{key}:{category}",
        )
        for category in optin.categories
    ]
    written = await services.ledger.apply(contact.id, changes)
    for row in written:
        services.metrics.consent_events.labels(action=row.action).inc()
    rows = await services.ledger.events_by_keys([c.event_key for c in changes])
    # Observers are idempotent by row id, so a retried request announces its rows again
    # rather than risk never announcing them.
    await services.hooks.emit_consent(contact, rows)
    after = await services.ledger.current(contact.id)
    return web.json_response(
        {
            "status": "recorded",
            "contact": contact_json(contact),
            "categories": {
                c: {"status": after[c].status.value, "since": _since(after[c].since)}
                for c in optin.categories
                if c in after
            },
            "event_ids": [row.id for row in rows],
            "replayed": not written,
            "generic_wording": optin.generic_wording,
            "lifted_opt_out": lifted if written else [],
        },
        status=201,
    )


async def _request_confirmation(services: Services, optin: CheckedOptin, key: str) -> web.Response:
    """Put a `ConsentRequest` on the contact's stream: the worker's flow asks them."""
    now = datetime.now(UTC)
    identifier = optin.identifier
    known: Contact | None = await services.contacts.find(identifier.value)
    window_open = False
    if known is not None and known.id is not None:
        window_open = await services.window.is_open(known.id, now)
        states = await services.ledger.current(known.id)
        opted_out = all(
            c in states and states[c].status is ConsentStatus.OPTED_OUT for c in optin.categories
        )
        if opted_out and not window_open:
            raise ApiProblem(
                409,
                "opted_out",
                "the contact opted out of these categories; they can be asked again only "
                "when they write to you (in the 24-hour window) or opt in themselves",
            )
    if not window_open and services.settings.optin_template is None:
        raise ApiProblem(
            422,
            "template_required",
            "the contact has not written in the last 24 hours, so the confirmation must be a "
            "template: set OPTIN_TEMPLATE",
        )
    contact = await services.contacts.resolve(wa_id=identifier.wa_id, user_id=identifier.user_id)
    assert contact.id is not None
    request_id = f"request:{key}"
    await services.inbound_queue.accept(
        [
            ev.ConsentRequest(
                event_id=request_id,
                phone_number_id=services.settings.phone_number_id,
                occurred_at=now,
                contact=ev.ContactRef(wa_id=contact.wa_id, user_id=contact.user_id),
                contact_id=contact.id,
                kind="optin",
                categories=optin.categories,
                source=optin.source.value,
                evidence_json=json.dumps({**optin.evidence, "double_opt_in": True}),
                policy_version=optin.policy_version,
                locale=optin.locale,
            )
        ]
    )
    return web.json_response(
        {
            "status": "pending_confirmation",
            "contact": contact_json(contact),
            "categories": list(optin.categories),
            "request_id": request_id,
            "prompt": "interactive" if window_open else "template",
        },
        status=202,
    )


@answers_problems
async def create_optin(request: web.Request) -> web.StreamResponse:
    services: Services = request.app[SERVICES]
    body, _ = await BODY.read(request)
    optin = check_optin(
        body,
        categories={c.name for c in services.language.categories},
        locales=services.language.catalogs.keys(),
        generic_policy=services.settings.generic_optin_policy,
        policy_version=services.settings.policy_version,
        now=datetime.now(UTC),
    )
    idempotency = await claim(services.redis, "optins", request, optin.fingerprint)
    if optin.double_opt_in:
        return await _request_confirmation(services, optin, idempotency.key)
    return await _record(services, optin, idempotency.key)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/optins", create_optin)

"""JSON Schemas (2020-12, as OpenAPI 3.1 uses) of the events POSTed to the CRM webhook.

Receivers can validate against them, the OpenAPI document lists them (components and the
`webhooks` section), and the tests check every body the deliverer sends against them, so the
description and the wire format cannot drift apart. Each schema stands alone (no `$ref`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bot.crm.attempt import ATTEMPT_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER
from bot.crm.events import CONSENT_CHANGED, MESSAGE_RECEIVED, PAYLOAD_VERSION
from flows.consent import ConsentAction, ConsentStatus, Method, Source


def _maybe(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


_TIME: Final = {"type": "string", "format": "date-time"}

_CONTACT: Final = {
    "type": "object",
    "description": "The customer: at least one of wa_id and user_id is set.",
    "required": ["id", "wa_id", "user_id"],
    "properties": {
        "id": {"type": "integer", "description": "optin-bot's contact id."},
        "wa_id": _maybe("string"),
        "user_id": _maybe("string", description="Business-scoped user id (BSUID)."),
        "parent_user_id": _maybe("string"),
        "username": _maybe("string"),
        "profile_name": _maybe("string"),
    },
}


def _event(event_type: str, id_pattern: str, data: Mapping[str, Any], doc: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": doc,
        "required": ["id", "type", "version", "occurred_at", "phone_number_id", "contact", "data"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": id_pattern,
                "description": f"Also sent as `{EVENT_ID_HEADER}`; the same event always has "
                "the same id, so a receiver can drop a repeat.",
            },
            "type": {"const": event_type},
            "version": {"const": PAYLOAD_VERSION},
            "occurred_at": _TIME,
            "phone_number_id": {"type": "string", "description": "The business number."},
            "contact": _CONTACT,
            "data": dict(data),
        },
    }


CONSENT_CHANGED_SCHEMA: Final = _event(
    CONSENT_CHANGED,
    "^consent:[0-9]+$",
    {
        "type": "object",
        "required": ["category", "action", "status", "source", "method", "ledger"],
        "properties": {
            "category": {"type": "string"},
            "action": {"type": "string", "enum": [a.value for a in ConsentAction]},
            "status": {
                "type": "string",
                "enum": [s.value for s in ConsentStatus],
                "description": "The category's status after this change.",
            },
            "source": {"type": "string", "enum": [s.value for s in Source]},
            "method": {"type": "string", "enum": [m.value for m in Method]},
            "evidence": _maybe("object", description="Null once the contact was erased."),
            "business_name": {"type": "string"},
            "policy_version": _maybe("string"),
            "recorded_at": _TIME,
            "ledger": {
                "type": "object",
                "description": "The ledger row: `seq` orders one chain's changes; `hash` and "
                "`prev_hash` match GET /v1/contacts/{contact}/ledger.",
                "required": ["id", "chain", "seq", "hash", "prev_hash"],
                "properties": {
                    "id": {"type": "integer"},
                    "chain": {"type": "integer"},
                    "seq": {"type": "integer"},
                    "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "prev_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                },
            },
        },
    },
    "A consent decision was recorded in the ledger (one event per category).",
)

MESSAGE_RECEIVED_SCHEMA: Final = _event(
    MESSAGE_RECEIVED,
    "^message:.+$",
    {
        "type": "object",
        "required": ["wamid", "message_type", "text", "caption", "details"],
        "properties": {
            "wamid": {"type": "string"},
            "message_type": {
                "type": "string",
                "description": "text, button, interactive, reaction, image, audio, video, "
                "document, sticker, location, contacts, order, system or unsupported.",
            },
            "text": _maybe("string"),
            "caption": _maybe("string"),
            "context_wamid": _maybe("string", description="The message it replies to."),
            "group_id": _maybe("string"),
            "details": {"type": "object", "description": "Fields of the message type."},
        },
    },
    "A customer wrote something the bot does not answer itself (not a keyword, button or "
    "reply it was waiting for): over to the business.",
)

EVENT_SCHEMAS: Final[Mapping[str, Mapping[str, Any]]] = {
    CONSENT_CHANGED: CONSENT_CHANGED_SCHEMA,
    MESSAGE_RECEIVED: MESSAGE_RECEIVED_SCHEMA,
}

_HEADERS: Final = [
    {
        "name": SIGNATURE_HEADER,
        "in": "header",
        "required": True,
        "description": "`sha256=` and the hex HMAC-SHA256 of the raw body, keyed with "
        "BUSINESS_WEBHOOK_SECRET (the scheme of Meta's X-Hub-Signature-256).",
        "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
    },
    {
        "name": EVENT_ID_HEADER,
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
    },
    {
        "name": ATTEMPT_HEADER,
        "in": "header",
        "required": True,
        "description": "1 for the first attempt, then 2, 3…",
        "schema": {"type": "integer", "minimum": 1},
    },
]

_RECEIVER_RESPONSES: Final = {
    "2XX": {"description": "Delivered."},
    "410": {"description": "Gone: delivery stops until resumed (POST /v1/webhooks/resume)."},
    "4XX": {"description": "Refused for good (except 408 and 429, which are retried)."},
    "5XX": {"description": "Retried with backoff (Retry-After honoured) for up to 48 hours."},
}


def _webhook(schema_name: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"crm{schema_name}",
            "summary": summary,
            "tags": ["webhooks"],
            "security": [],
            "parameters": _HEADERS,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}
                },
            },
            "responses": _RECEIVER_RESPONSES,
        }
    }


#: OpenAPI 3.1 `webhooks`: what optin-bot POSTs to BUSINESS_WEBHOOK_URL.
OPENAPI_WEBHOOKS: Final[dict[str, Any]] = {
    CONSENT_CHANGED: _webhook("CrmConsentChanged", "A consent change"),
    MESSAGE_RECEIVED: _webhook("CrmMessageReceived", "An inbound message the bot did not handle"),
}

#: Component schemas of the events, for `OPENAPI_SCHEMAS`.
OPENAPI_EVENT_SCHEMAS: Final[dict[str, Any]] = {
    "CrmConsentChanged": CONSENT_CHANGED_SCHEMA,
    "CrmMessageReceived": MESSAGE_RECEIVED_SCHEMA,
}

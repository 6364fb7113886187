"""`/v1/contacts/{contact}/…`: consent, can-send, ledger and transcript.

`{contact}` is a wa_id (digits) or a business-scoped user id (`CC.digits`), current or past: an
old number still finds its contact, because identity changes keep one contact and one history.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from bot.api.errors import api_error
from bot.api.identifiers import contact_parameter_problem
from bot.api.openapi import CONTACT_ID_ERROR, CONTACT_PARAMETER, error_responses, json_response, ref
from bot.appkeys import SERVICES
from bot.db.models import Contact
from bot.services import Services
from flows.consent import ConsentAction, ConsentStatus, Method, Source
from flows.gate import Reason


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def contact_json(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "wa_id": contact.wa_id,
        "user_id": contact.user_id,
        "parent_user_id": contact.parent_user_id,
        "username": contact.username,
        "profile_name": contact.profile_name,
        "locale": contact.locale,
    }


def contact_parameter(request: web.Request) -> str | web.Response:
    """The route's `{contact}`, or the 400 `invalid_contact_id` answer when it cannot be one."""
    identifier = request.match_info["contact"]
    problem = contact_parameter_problem(identifier)
    if problem is not None:
        return api_error(400, "invalid_contact_id", problem)
    return identifier


async def _contact(request: web.Request) -> Contact | web.Response:
    identifier = contact_parameter(request)
    if isinstance(identifier, web.Response):
        return identifier
    contact = await request.app[SERVICES].contacts.find(identifier)
    if contact is None or contact.id is None:
        return api_error(404, "unknown_contact", f"no contact {identifier}")
    return contact


async def consent(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    contact = await _contact(request)
    if isinstance(contact, web.Response):
        return contact
    assert contact.id is not None
    views = await services.ledger.current(contact.id)
    categories: dict[str, Any] = {}
    for category in services.language.categories:
        view = views.get(category.name)
        categories[category.name] = {
            "status": (view.status if view else ConsentStatus.NONE).value,
            "since": _iso(view.since) if view else None,
            "source": view.source.value if view and view.source else None,
            "method": view.method.value if view and view.method else None,
            "policy_version": view.policy_version if view else None,
        }
    return web.json_response({"contact": contact_json(contact), "categories": categories})


async def can_send(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    category = request.query.get("category")
    kind = request.query.get("kind", "template")
    if not category:
        return api_error(422, "invalid_request", "query parameter `category` is required")
    if kind not in ("template", "text"):
        return api_error(422, "invalid_request", "`kind` is template or text")
    identifier = contact_parameter(request)
    if isinstance(identifier, web.Response):
        return identifier
    contact = await services.contacts.find(identifier)
    answer = await services.gate.check(contact, category, template=kind == "template")
    return web.json_response(
        {
            "allowed": answer.decision.allowed,
            "reason": answer.decision.reason.value,
            "category": category,
            "kind": kind,
            "status": answer.status.value,
            "window_open": answer.window_open,
            "window_closes_at": _iso(answer.window_closes_at),
            "contact_known": contact is not None,
        }
    )


async def ledger(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    contact = await _contact(request)
    if isinstance(contact, web.Response):
        return contact
    assert contact.id is not None
    events = await services.ledger.events(contact.id)
    report = await services.ledger.verify(contact.id)
    return web.json_response(
        {
            "contact": contact_json(contact),
            "verified": report.ok,
            "events": [
                {
                    "id": e.id,
                    "chain": e.chain,
                    "seq": e.seq,
                    "category": e.category,
                    "action": e.action,
                    "source": e.source,
                    "method": e.method,
                    "evidence": json.loads(e.evidence_json) if e.evidence_json else None,
                    "business_name": e.business_name,
                    "policy_version": e.policy_version,
                    "occurred_at": _iso(e.occurred_at),
                    "recorded_at": _iso(e.recorded_at),
                    "prev_hash": e.prev_hash,
                    "hash": e.hash,
                }
                for e in events
            ],
        }
    )


async def transcript(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    contact = await _contact(request)
    if isinstance(contact, web.Response):
        return contact
    assert contact.id is not None
    try:
        limit = min(int(request.query.get("limit", "100")), 1000)
        before = request.query.get("before")
        before_at = datetime.fromisoformat(before) if before else None
    except ValueError:
        return api_error(422, "invalid_request", "`limit` is a number, `before` an ISO 8601 time")
    if limit < 1:
        return api_error(422, "invalid_request", "`limit` must be at least 1")
    if before_at is not None and before_at.tzinfo is None:
        return api_error(422, "invalid_request", "`before` needs a time zone")
    rows = await services.transcript.list_for_contact(contact.id, limit=limit, before=before_at)
    return web.json_response(
        {
            "contact": contact_json(contact),
            "entries": [
                {
                    "id": r.id,
                    "direction": r.direction,
                    "kind": r.kind,
                    "text": r.text,
                    "status": r.status,
                    "wamid": r.wamid,
                    "message_id": r.message_id,
                    "error_code": r.error_code,
                    "error_title": r.error_title,
                    "occurred_at": _iso(r.occurred_at),
                }
                for r in rows
            ],
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/contacts/{contact}/consent", consent)
    app.router.add_get("/v1/contacts/{contact}/can-send", can_send)
    app.router.add_get("/v1/contacts/{contact}/ledger", ledger)
    app.router.add_get("/v1/contacts/{contact}/transcript", transcript)


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


_TIME = {"type": "string", "format": "date-time"}
_MAYBE_TIME = _nullable("string", format="date-time")
_CONTACT_ERRORS = error_responses(400, 404, descriptions=CONTACT_ID_ERROR)

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Contact": {
        "type": "object",
        "description": "A customer, known by a wa_id, a business-scoped user id, or both.",
        "required": ["id", "wa_id", "user_id"],
        "properties": {
            "id": {"type": "integer"},
            "wa_id": _nullable("string"),
            "user_id": _nullable("string"),
            "parent_user_id": _nullable("string"),
            "username": _nullable("string"),
            "profile_name": _nullable("string"),
            "locale": _nullable("string"),
        },
    },
    "CategoryConsent": {
        "type": "object",
        "required": ["status", "since"],
        "properties": {
            "status": {"type": "string", "enum": [s.value for s in ConsentStatus]},
            "since": _MAYBE_TIME,
            "source": {"type": ["string", "null"], "enum": [*(s.value for s in Source), None]},
            "method": {"type": ["string", "null"], "enum": [*(m.value for m in Method), None]},
            "policy_version": _nullable("string"),
        },
    },
    "ContactConsent": {
        "type": "object",
        "required": ["contact", "categories"],
        "properties": {
            "contact": ref("Contact"),
            "categories": {
                "type": "object",
                "description": "Every category of the business, by name.",
                "additionalProperties": ref("CategoryConsent"),
            },
        },
    },
    "CanSendAnswer": {
        "type": "object",
        "required": ["allowed", "reason", "category", "kind", "status", "window_open"],
        "properties": {
            "allowed": {"type": "boolean"},
            "reason": {"type": "string", "enum": [r.value for r in Reason]},
            "category": {"type": "string"},
            "kind": {"type": "string", "enum": ["template", "text"]},
            "status": {"type": "string", "enum": [s.value for s in ConsentStatus]},
            "window_open": {"type": "boolean"},
            "window_closes_at": _MAYBE_TIME,
            "contact_known": {"type": "boolean"},
        },
    },
    "LedgerEvent": {
        "type": "object",
        "required": ["id", "category", "action", "source", "method", "occurred_at", "hash"],
        "properties": {
            "id": {"type": "integer"},
            "chain": {"type": "integer"},
            "seq": {"type": "integer"},
            "category": {"type": "string"},
            "action": {"type": "string", "enum": [a.value for a in ConsentAction]},
            "source": {"type": "string", "enum": [s.value for s in Source]},
            "method": {"type": "string", "enum": [m.value for m in Method]},
            "evidence": {"type": ["object", "null"]},
            "business_name": {"type": "string"},
            "policy_version": _nullable("string"),
            "occurred_at": _TIME,
            "recorded_at": _TIME,
            "prev_hash": {"type": "string"},
            "hash": {"type": "string"},
        },
    },
    "ContactLedger": {
        "type": "object",
        "required": ["contact", "verified", "events"],
        "properties": {
            "contact": ref("Contact"),
            "verified": {"type": "boolean", "description": "The hash chain checks out."},
            "events": {"type": "array", "items": ref("LedgerEvent")},
        },
    },
    "TranscriptEntry": {
        "type": "object",
        "required": ["id", "direction", "kind", "occurred_at"],
        "properties": {
            "id": {"type": "integer"},
            "direction": {"type": "string", "enum": ["inbound", "outbound", "status"]},
            "kind": {"type": "string"},
            "text": _nullable("string"),
            "status": _nullable("string"),
            "wamid": _nullable("string"),
            "message_id": _nullable("string"),
            "error_code": _nullable("integer"),
            "error_title": _nullable("string"),
            "occurred_at": _TIME,
        },
    },
    "ContactTranscript": {
        "type": "object",
        "required": ["contact", "entries"],
        "properties": {
            "contact": ref("Contact"),
            "entries": {"type": "array", "items": ref("TranscriptEntry")},
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/contacts/{contact}/consent": {
        "get": {
            "operationId": "getContactConsent",
            "summary": "The contact's consent in every category",
            "tags": ["contacts"],
            "parameters": [CONTACT_PARAMETER],
            "responses": {
                "200": json_response("Consent by category.", ref("ContactConsent")),
                **_CONTACT_ERRORS,
            },
        }
    },
    "/v1/contacts/{contact}/can-send": {
        "get": {
            "operationId": "canSend",
            "summary": "May a message of this category go to the contact now?",
            "description": "The consent gate's answer; `POST /v1/messages` applies the same rule. "
            "An unknown contact is answered (`contact_known: false`), not 404.",
            "tags": ["contacts"],
            "parameters": [
                CONTACT_PARAMETER,
                {
                    "name": "category",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
                },
                {
                    "name": "kind",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "string",
                        "enum": ["template", "text"],
                        "default": "template",
                    },
                },
            ],
            "responses": {
                "200": json_response("The gate's answer.", ref("CanSendAnswer")),
                **error_responses(400, 422, descriptions=CONTACT_ID_ERROR),
            },
        }
    },
    "/v1/contacts/{contact}/ledger": {
        "get": {
            "operationId": "getContactLedger",
            "summary": "The contact's consent ledger, oldest first, and whether its chain verifies",
            "tags": ["contacts"],
            "parameters": [CONTACT_PARAMETER],
            "responses": {
                "200": json_response("The ledger rows.", ref("ContactLedger")),
                **_CONTACT_ERRORS,
            },
        }
    },
    "/v1/contacts/{contact}/transcript": {
        "get": {
            "operationId": "getContactTranscript",
            "summary": "What was said with the contact: the latest `limit` entries, oldest first",
            "tags": ["contacts"],
            "parameters": [
                CONTACT_PARAMETER,
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                },
                {
                    "name": "before",
                    "in": "query",
                    "required": False,
                    "description": "Only entries before this time (with a time zone).",
                    "schema": {"type": "string", "format": "date-time"},
                },
            ],
            "responses": {
                "200": json_response("Transcript entries.", ref("ContactTranscript")),
                **error_responses(400, 404, 422, descriptions=CONTACT_ID_ERROR),
            },
        }
    },
}

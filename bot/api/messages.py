"""`POST /v1/messages`: a business message, sent only if the consent gate lets it through.

The business names the contact, the category the message belongs to, and a text (only inside
the customer's 24-hour window) or a template. The same `ConsentGate` that answers
`/v1/contacts/{contact}/can-send` decides, and a refusal is 409 with the gate's reason code, so
a business never has to guess why a message did not go. Accepted messages go through the same
outbound queue and rate limit as the bot's own replies; the answer is our message id, under
which the transcript follows its delivery. With an `Idempotency-Key`, a retried request queues
nothing new and gets the same answer.

Every marketing message carries a way out. A template is checked against the account's template
list (`bot.message_templates`): a MARKETING template without an opt-out quick reply or footer is
refused with 422 `template_without_opt_out`, a template the list does not hold with 422
`unknown_template`, and 503 `templates_unavailable` answers while the list cannot be read. A
free-form text of a marketing category ends with the contact's language's opt-out line ("Reply
STOP to unsubscribe.").
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from bot.api.contacts import contact_json
from bot.api.idempotency import OPENAPI_PARAMETER as IDEMPOTENCY_PARAMETER
from bot.api.idempotency import Idempotency, canonical_hash, claim, recall, remember
from bot.api.identifiers import IdentifierError, lookup_key
from bot.api.openapi import (
    COMMON_SCHEMAS,
    error_responses,
    json_request_body,
    json_response,
    ref,
)
from bot.api.validation import BODY_ERROR_STATUSES, ApiProblem, BodySchema, answers_problems
from bot.appkeys import SERVICES
from bot.db.models import Contact
from bot.graph import MessageBuildError, template_message, text_message
from bot.graph.builders import TEXT_BODY_MAX
from bot.message_templates import TemplateRefused, TemplatesUnavailable
from bot.message_templates.footer_line import LineDoesNotFit, with_opt_out_line
from bot.outbound import OutboundMessage
from bot.replies import recipient
from bot.send_guard import TAG_FIELD
from bot.services import Services
from flows.consent import CategoryKind
from flows.effects import Purpose
from flows.gate import ALLOWING, Reason

TEMPLATE_COMPONENTS_MAX: Final = 20

OPENAPI_SCHEMAS: dict[str, Any] = {
    "TemplateParameter": {
        "type": "object",
        "description": "A template parameter as the Cloud API takes it (passed through).",
        "required": ["type"],
        "properties": {
            "type": {
                "type": "string",
                "enum": [
                    "text",
                    "currency",
                    "date_time",
                    "image",
                    "document",
                    "video",
                    "location",
                    "payload",
                    "coupon_code",
                    "action",
                ],
            },
            "text": {"type": "string", "minLength": 1, "maxLength": TEXT_BODY_MAX},
            "payload": {"type": "string", "minLength": 1, "maxLength": 256},
        },
    },
    "TemplateComponent": {
        "type": "object",
        "description": "A template component as the Cloud API takes it: a button needs its "
        "`sub_type` and `index`.",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "enum": ["header", "body", "button"]},
            "sub_type": {
                "type": "string",
                "enum": ["quick_reply", "url", "catalog", "copy_code", "flow"],
            },
            "index": {"type": "string", "pattern": "^[0-9]$"},
            "parameters": {
                "type": "array",
                "maxItems": 100,
                "items": ref("TemplateParameter"),
            },
        },
        "if": {"properties": {"type": {"const": "button"}}},
        "then": {"required": ["sub_type", "index"]},
    },
    "MessageTemplate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "language"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9_]{1,512}$"},
            "language": {
                "description": "The template's language code (`en`, `en_US`), or Meta's "
                '`{"code": …, "policy": "deterministic"}`.',
                "anyOf": [
                    {"type": "string", "pattern": "^[a-z]{2,3}(_[A-Za-z0-9]{2,4})?$"},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["code"],
                        "properties": {
                            "code": {
                                "type": "string",
                                "pattern": "^[a-z]{2,3}(_[A-Za-z0-9]{2,4})?$",
                            },
                            "policy": {"const": "deterministic"},
                        },
                    },
                ],
            },
            "components": {
                "type": "array",
                "maxItems": TEMPLATE_COMPONENTS_MAX,
                "items": ref("TemplateComponent"),
            },
        },
    },
    "MessageRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["to", "category"],
        "properties": {
            "to": {
                "type": "string",
                "minLength": 1,
                "maxLength": 80,
                "description": "A contact who wrote to the business or was recorded: wa_id, "
                "E.164 number or business-scoped user id.",
            },
            "category": {"type": "string", "minLength": 1, "maxLength": 64},
            "text": {
                "type": "string",
                "minLength": 1,
                "maxLength": TEXT_BODY_MAX,
                "pattern": "\\S",
                "x-error-detail": "must not be blank",
                "description": "A free-form text (not blank): only inside the 24-hour window. "
                "Of a marketing category, it ends with the contact's language's opt-out line "
                '("Reply STOP to unsubscribe.") unless it holds one already.',
            },
            "template": {
                **ref("MessageTemplate"),
                "description": "An approved template; a MARKETING one must carry a way out (a "
                "stop quick reply or a footer naming the stop word).",
            },
        },
        "oneOf": [{"required": ["text"]}, {"required": ["template"]}],
        "x-error-detail": "must have exactly one of `text` or `template`",
    },
    "MessageQueued": {
        "type": "object",
        "required": ["message_id", "status", "contact", "category", "kind", "reason"],
        "properties": {
            "message_id": {
                "type": "string",
                "description": "Our id; the transcript follows the message under it.",
            },
            "status": {"const": "queued"},
            "contact": ref("Contact"),
            "category": {"type": "string"},
            "kind": {"type": "string", "enum": ["text", "template"]},
            "reason": {
                "type": "string",
                "enum": sorted(r.value for r in ALLOWING),
                "description": "Why the gate let it through.",
            },
            "replayed": {
                "type": "boolean",
                "description": "The same request (same Idempotency-Key) was accepted before.",
            },
        },
    },
}

_REFUSALS = sorted(r.value for r in Reason if r not in ALLOWING)

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/messages": {
        "post": {
            "operationId": "sendMessage",
            "summary": "Send a text or a template to a contact, through the consent gate",
            "tags": ["messages"],
            "parameters": [IDEMPOTENCY_PARAMETER],
            "requestBody": json_request_body(
                ref("MessageRequest"),
                examples={
                    "template": {
                        "to": "34612345678",
                        "category": "marketing",
                        "template": {
                            "name": "spring_sale",
                            "language": "en",
                            "components": [
                                {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}
                            ],
                        },
                    },
                    "text": {
                        "to": "34612345678",
                        "category": "order_updates",
                        "text": "Your order has shipped.",
                    },
                },
            ),
            "responses": {
                "202": json_response("Queued for sending.", ref("MessageQueued")),
                **error_responses(
                    404,
                    409,
                    *BODY_ERROR_STATUSES,
                    503,
                    descriptions={
                        409: "The consent gate refused: `error` is one of "
                        + ", ".join(f"`{r}`" for r in _REFUSALS)
                        + "; or `idempotency_conflict`.",
                        422: "The body is invalid (`invalid_request`), `to` is not a contact "
                        "identifier (`invalid_contact`), the template is MARKETING without a "
                        "way out (`template_without_opt_out`: no quick reply or footer naming "
                        "a stop word) or not in the account's template list "
                        "(`unknown_template`).",
                        503: "The account's template list cannot be read from Meta and none "
                        "is cached (`templates_unavailable`): retry later.",
                    },
                ),
            },
        }
    }
}

BODY: Final = BodySchema({**COMMON_SCHEMAS, **OPENAPI_SCHEMAS}, "MessageRequest")


def refusal_detail(reason: Reason, category: str, known: list[str]) -> str:
    """What a refusal means for the business, in one sentence."""
    details = {
        Reason.OPTED_OUT: f"the contact opted out of {category}",
        Reason.NO_CONSENT: f"the contact has not opted in to {category} (and a reply without "
        "consent is only possible in the 24-hour window, for a non-marketing category)",
        Reason.PENDING: f"the contact has not confirmed {category} yet",
        Reason.LAPSED: f"the contact's consent to {category} lapsed: ask them to re-consent",
        Reason.WINDOW_CLOSED: "the contact has not written in the last 24 hours: only a "
        "template may go",
        Reason.UNKNOWN_CATEGORY: f"no category {category!r}; known: {', '.join(known)}",
    }
    return details.get(reason, f"refused: {reason.value}")


def _message_id(idempotency: Idempotency) -> str:
    if idempotency.from_header:
        return hashlib.sha256(f"api:message:{idempotency.key}".encode()).hexdigest()[:32]
    return uuid.uuid4().hex


def _language(value: str | Mapping[str, Any]) -> str:
    return value if isinstance(value, str) else str(value["code"])


def _outbound(contact: Contact, body: Mapping[str, Any], message_id: str) -> OutboundMessage:
    assert contact.id is not None
    try:
        to = recipient(contact)
    except MessageBuildError:
        # Only pseudonyms are left of an erased contact: nobody to address.
        raise ApiProblem(
            409,
            Reason.OPTED_OUT.value,
            "the contact's personal data was erased: they are do-not-contact until they opt in "
            "again",
        ) from None
    template = body.get("template")
    meta = {
        "purpose": Purpose.BUSINESS.value,
        "wa_id": contact.wa_id or "",
        "user_id": contact.user_id or "",
    }
    try:
        if template is None:
            cloud_body = text_message(to, body["text"])
            kind, text = "text", body["text"]
        else:
            language = _language(template["language"])
            cloud_body = template_message(
                to, template["name"], language, template.get("components") or None
            )
            cloud_body[TAG_FIELD] = message_id  # echoed in statuses: at most once (send_guard)
            kind, text = "template", None
            meta.update(template=template["name"], language=language)
    except MessageBuildError as exc:
        raise ApiProblem(422, "invalid_request", str(exc)) from None
    return OutboundMessage(
        message_id=message_id,
        contact_id=contact.id,
        body=cloud_body,
        kind=kind,
        category=body["category"],
        text=text,
        meta=meta,
    )


def _queued(
    contact: Contact, body: Mapping[str, Any], message_id: str, reason: str, replayed: bool
) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "status": "queued",
        "contact": contact_json(contact),
        "category": body["category"],
        "kind": "template" if "template" in body else "text",
        "reason": reason,
        "replayed": replayed,
    }


async def _with_way_out(
    services: Services, contact: Contact, body: Mapping[str, Any]
) -> Mapping[str, Any]:
    """The body as it may go: a template checked for its way out (refused as an
    `ApiProblem`), a marketing text with the opt-out line appended."""
    template = body.get("template")
    if template is not None:
        try:
            await services.templates.check(template["name"], _language(template["language"]))
        except TemplateRefused as exc:
            raise ApiProblem(422, exc.code, str(exc)) from None
        except TemplatesUnavailable as exc:
            raise ApiProblem(503, "templates_unavailable", str(exc)) from None
        return body
    category = services.gate.category(body["category"])
    if category is None or category.kind is not CategoryKind.MARKETING:
        return body
    language = services.keywords.current  # the business's reply overrides included
    try:
        text = with_opt_out_line(
            body["text"], language.catalogs, contact.locale, language.default_locale
        )
    except LineDoesNotFit as exc:
        raise ApiProblem(422, "invalid_request", str(exc)) from None
    return {**body, "text": text}


@answers_problems
async def send_message(request: web.Request) -> web.StreamResponse:
    services: Services = request.app[SERVICES]
    body, _ = await BODY.read(request)
    try:
        key = lookup_key(body["to"])
    except IdentifierError as exc:
        raise ApiProblem(422, "invalid_contact", str(exc)) from None
    contact = await services.contacts.find(key)
    if contact is None or contact.id is None:
        raise ApiProblem(
            404,
            "unknown_contact",
            f"no contact {key}: they have not written to you and no opt-in was recorded",
        )
    idempotency = await claim(
        services.redis, "messages", request, canonical_hash({**body, "to": key})
    )
    if idempotency.replay:
        earlier = await recall(services.redis, "messages", idempotency.key)
        if earlier is not None:
            return web.json_response({**earlier, "replayed": True}, status=202)
    message_id = _message_id(idempotency)
    category = body["category"]
    answer = await services.gate.check(contact, category, template="template" in body)
    if not answer.decision.allowed:
        known = sorted(c.name for c in services.language.categories)
        raise ApiProblem(
            409,
            answer.decision.reason.value,
            refusal_detail(answer.decision.reason, category, known),
        )
    message = _outbound(contact, await _with_way_out(services, contact, body), message_id)
    queued = await services.outbound_queue.enqueue(message, now=datetime.now(UTC))
    answer_json = _queued(contact, body, message_id, answer.decision.reason.value, not queued)
    if idempotency.from_header:
        await remember(
            services.redis, "messages", idempotency.key, answer_json, contact_id=contact.id
        )
    return web.json_response(answer_json, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", send_message)

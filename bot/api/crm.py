"""`/v1/webhooks/…`: the delivery log of the CRM webhook (`BUSINESS_WEBHOOK_URL`).

A business sees here what was sent to its receiver and what became of it: each event with its
status (`pending`, `failed` while being retried, `delivered`, `dead`), attempts, the last
status code or error and when. `POST /v1/webhooks/resume` restarts delivery after the receiver
answered 410 Gone; `POST /v1/webhooks/deliveries/{event_id}/redeliver` queues a dead event
again. The log is kept for 14 days after an event's last change.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from bot.api.errors import api_error
from bot.api.openapi import error_responses, json_response, nullable, ref
from bot.api.paging import page_parameters, read_page
from bot.appkeys import SERVICES
from bot.crm.event_schemas import OPENAPI_EVENT_SCHEMAS, OPENAPI_WEBHOOKS
from bot.crm.events import EVENT_TYPES
from bot.crm.log import DeadReason, DeliveryLog, DeliveryStatus, is_cursor
from bot.crm.outbox import queued_events
from bot.crm.pause import current_pause, resume, url_digest
from bot.crm.redeliver import Refusal, redeliver
from bot.services import Services

# `OPENAPI_WEBHOOKS` (the OpenAPI 3.1 `webhooks` section: what is POSTed to BUSINESS_WEBHOOK_URL)
# is re-exported for the document next to the paths and schemas.
__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "OPENAPI_WEBHOOKS", "add_routes"]

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500


async def _receiver(services: Services) -> dict[str, Any]:
    url = services.settings.business_webhook_url
    paused = await current_pause(services.redis)
    applies = url is not None and paused is not None and paused.url_digest == url_digest(url)
    return {
        "configured": url is not None,
        "paused": paused.to_json() if applies and paused is not None else None,
        "queued": await queued_events(services.redis),
    }


async def list_deliveries(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    query = request.query
    asked = read_page(query, default=DEFAULT_LIMIT, maximum=MAX_LIMIT, is_cursor=is_cursor)
    if isinstance(asked, web.Response):
        return asked
    status_text = query.get("status")
    statuses = [s.value for s in DeliveryStatus]
    if status_text is not None and status_text not in statuses:
        return api_error(422, "invalid_request", f"`status` is one of {', '.join(statuses)}")
    contact_id: int | None = None
    identifier = query.get("contact")
    if identifier:
        contact = await services.contacts.find(identifier)
        if contact is None or contact.id is None:
            return api_error(404, "unknown_contact", f"no contact {identifier}")
        contact_id = contact.id
    page = await DeliveryLog(services.redis).page(
        contact_id=contact_id,
        status=DeliveryStatus(status_text) if status_text else None,
        limit=asked.limit,
        cursor=asked.cursor,
    )
    return web.json_response(
        {
            "deliveries": [d.to_json() for d in page.deliveries],
            "next_cursor": page.next_cursor,
            "receiver": await _receiver(services),
        }
    )


async def get_delivery(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    event_id = request.match_info["event_id"]
    delivery = await DeliveryLog(services.redis).get(event_id)
    if delivery is None:
        return api_error(404, "unknown_delivery", f"no delivery of event {event_id} in the log")
    return web.json_response(delivery.to_json())


async def resume_delivery(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    lifted = await resume(services.redis)
    return web.json_response({"resumed": lifted, "receiver": await _receiver(services)})


async def redeliver_event(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    event_id = request.match_info["event_id"]
    outcome = await redeliver(services.redis, event_id)
    if outcome.refused is Refusal.UNKNOWN or outcome.delivery is None:
        return api_error(404, "unknown_delivery", f"no delivery of event {event_id} in the log")
    if outcome.refused is Refusal.NOT_DEAD:
        status = outcome.delivery.status.value
        return api_error(409, "not_dead", f"event {event_id} is {status}: only dead events")
    if outcome.refused is Refusal.NOT_RETAINED:
        return api_error(
            409,
            "not_retained",
            f"event {event_id} is no longer on the dead-letter stream (trimmed or erased)",
        )
    return web.json_response(outcome.delivery.to_json(), status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/webhooks/deliveries", list_deliveries)
    app.router.add_post("/v1/webhooks/deliveries/{event_id:.+}/redeliver", redeliver_event)
    app.router.add_get("/v1/webhooks/deliveries/{event_id:.+}", get_delivery)
    app.router.add_post("/v1/webhooks/resume", resume_delivery)


_TIME = nullable({"type": "string", "format": "date-time"})
_TAGS: Final = ["webhooks"]
_EVENT_ID: Final = {
    "name": "event_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "examples": ["consent:42"]},
}
_DELIVERY_404 = error_responses(404, descriptions={404: "No such event in the delivery log."})

OPENAPI_SCHEMAS: dict[str, Any] = {
    **OPENAPI_EVENT_SCHEMAS,
    "WebhookDelivery": {
        "type": "object",
        "description": "What became of one event sent to BUSINESS_WEBHOOK_URL.",
        "required": ["event_id", "type", "status", "attempts", "contact"],
        "properties": {
            "event_id": {
                "type": "string",
                "description": "The `X-Optin-Event-Id` (`consent:<ledger id>`, `message:<wamid>`).",
            },
            "type": {"type": "string", "enum": list(EVENT_TYPES)},
            "status": {
                "type": "string",
                "enum": [s.value for s in DeliveryStatus],
                "description": "`pending`: not yet answered; `failed`: the last attempt failed "
                "and another follows at `next_attempt_at`; `delivered`: the receiver answered "
                "2xx; `dead`: given up (see `dead_reason`).",
            },
            "attempts": {"type": "integer", "minimum": 0},
            "contact": {
                "type": "object",
                "properties": {
                    "id": nullable({"type": "integer"}),
                    "wa_id": nullable({"type": "string"}),
                    "user_id": nullable({"type": "string"}),
                },
            },
            "enqueued_at": _TIME,
            "first_attempt_at": _TIME,
            "last_attempt_at": _TIME,
            "next_attempt_at": _TIME,
            "finished_at": _TIME,
            "last_status_code": nullable({"type": "integer"}),
            "last_error": nullable({"type": "string"}),
            "dead_reason": {
                "type": ["string", "null"],
                "enum": [*(r.value for r in DeadReason), None],
                "description": "`rejected`: a 4xx (not 408/429); `gone`: 410, delivery paused; "
                "`expired`: still failing after the retry window (48 h); `malformed`: unreadable.",
            },
        },
    },
    "WebhookReceiver": {
        "type": "object",
        "required": ["configured", "paused", "queued"],
        "properties": {
            "configured": {"type": "boolean", "description": "BUSINESS_WEBHOOK_URL is set."},
            "paused": nullable(
                {
                    "type": "object",
                    "description": "Delivery stopped because the receiver answered 410 Gone.",
                    "properties": {
                        "reason": {"type": "string", "enum": ["gone"]},
                        "event_id": {"type": "string"},
                        "since": {"type": "string", "format": "date-time"},
                    },
                }
            ),
            "queued": {"type": "integer", "description": "Events waiting to be delivered."},
        },
    },
    "WebhookDeliveryPage": {
        "type": "object",
        "required": ["deliveries", "next_cursor", "receiver"],
        "properties": {
            "deliveries": {"type": "array", "items": ref("WebhookDelivery")},
            "next_cursor": nullable(
                {"type": "string", "description": "Pass as `cursor` for the next page."}
            ),
            "receiver": ref("WebhookReceiver"),
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/webhooks/deliveries": {
        "get": {
            "operationId": "listWebhookDeliveries",
            "summary": "The delivery log of the CRM webhook, newest first",
            "description": "A filtered page may hold fewer than `limit` entries and still have "
            "a `next_cursor`: follow it until it is null.",
            "tags": _TAGS,
            "parameters": [
                {
                    "name": "contact",
                    "in": "query",
                    "description": "Only this contact's events (a wa_id or a business-scoped "
                    "user id, current or former).",
                    "schema": {"type": "string"},
                },
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"type": "string", "enum": [s.value for s in DeliveryStatus]},
                },
                *page_parameters(
                    default=DEFAULT_LIMIT, maximum=MAX_LIMIT, cursor_pattern="^[0-9]+-[0-9]+$"
                ),
            ],
            "responses": {
                "200": json_response("A page of deliveries.", ref("WebhookDeliveryPage")),
                **error_responses(404, 422, descriptions={404: "No such contact."}),
            },
        }
    },
    "/v1/webhooks/deliveries/{event_id}": {
        "get": {
            "operationId": "getWebhookDelivery",
            "summary": "What became of one event",
            "tags": _TAGS,
            "parameters": [_EVENT_ID],
            "responses": {
                "200": json_response("The event's delivery.", ref("WebhookDelivery")),
                **_DELIVERY_404,
            },
        }
    },
    "/v1/webhooks/deliveries/{event_id}/redeliver": {
        "post": {
            "operationId": "redeliverWebhookEvent",
            "summary": "Deliver a dead event again, with a fresh retry window",
            "description": "For after the receiver was fixed: the event goes back on its "
            "contact's queue (it may now arrive after newer events of that contact; order "
            "consent events by `seq`). Only `dead` events whose body is still on the "
            "dead-letter stream (the newest 100,000) can be redelivered.",
            "tags": _TAGS,
            "parameters": [_EVENT_ID],
            "responses": {
                "202": json_response("Queued again; its log entry.", ref("WebhookDelivery")),
                **error_responses(
                    404,
                    409,
                    descriptions={
                        404: "No such event in the delivery log.",
                        409: "`not_dead`: the event is not dead; `not_retained`: its body is "
                        "no longer kept.",
                    },
                ),
            },
        }
    },
    "/v1/webhooks/resume": {
        "post": {
            "operationId": "resumeWebhookDelivery",
            "summary": "Deliver again after the receiver answered 410 Gone",
            "tags": _TAGS,
            "responses": {
                "200": json_response(
                    "Delivery runs (again).",
                    {
                        "type": "object",
                        "required": ["resumed", "receiver"],
                        "properties": {
                            "resumed": {
                                "type": "boolean",
                                "description": "False when delivery was not paused.",
                            },
                            "receiver": ref("WebhookReceiver"),
                        },
                    },
                ),
            },
        }
    },
}

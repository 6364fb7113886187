"""`/v1/dead`: the inbound events the workers gave up on, and putting them back.

Thin I/O around `bot.dead_events` (the `optin-bot dead` command calls the same functions): a
page of dead events newest first, replay of one by its `dead_id`, replay of all.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from bot.api.errors import api_error
from bot.api.openapi import error_responses, json_response, nullable, ref
from bot.api.paging import page_parameters, read_page
from bot.appkeys import SERVICES
from bot.dead_events import (
    DEFAULT_LIMIT,
    FAILED,
    MAX_LIMIT,
    UNDECODABLE,
    Replayed,
    is_dead_id,
    list_dead,
    replay,
    replay_all,
)
from bot.services import Services

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "add_routes"]


async def list_dead_events(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    asked = read_page(request.query, default=DEFAULT_LIMIT, maximum=MAX_LIMIT, is_cursor=is_dead_id)
    if isinstance(asked, web.Response):
        return asked
    page = await list_dead(services.redis, limit=asked.limit, cursor=asked.cursor)
    return web.json_response(
        {
            "dead": [event.to_json() for event in page.events],
            "next_cursor": page.next_cursor,
            "total": page.total,
        }
    )


async def replay_dead_event(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    dead_id = request.match_info["dead_id"]
    if not is_dead_id(dead_id):
        return api_error(404, "unknown_dead_event", f"no dead event {dead_id}")
    result = await replay(services.redis, dead_id)
    if result.outcome is Replayed.UNKNOWN:
        return api_error(
            404,
            "unknown_dead_event",
            f"no dead event {dead_id} (already replayed, trimmed or erased?)",
        )
    if result.outcome is Replayed.UNDECODABLE:
        return api_error(
            409, "undecodable", f"dead event {dead_id} holds no event a worker can read"
        )
    return web.json_response(result.to_json(), status=202)


async def replay_dead_events(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    results = await replay_all(services.redis)
    replayed = [r for r in results if r.outcome is Replayed.REPLAYED]
    kept = [r for r in results if r.outcome is Replayed.UNDECODABLE]
    return web.json_response(
        {
            "replayed": len(replayed),
            "undecodable": [r.dead_id for r in kept],
            "results": [r.to_json() for r in results],
        },
        status=202,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/dead", list_dead_events)
    app.router.add_post("/v1/dead/replay", replay_dead_events)
    app.router.add_post("/v1/dead/{dead_id}/replay", replay_dead_event)


_TAGS: Final = ["dead events"]
_DEAD_ID_PATTERN: Final = "^[0-9]+-[0-9]+$"

OPENAPI_SCHEMAS: dict[str, Any] = {
    "DeadEvent": {
        "type": "object",
        "description": "An inbound event the workers gave up on, kept on the dead-letter stream.",
        "required": ["dead_id", "reason", "error", "attempts", "died_at", "event_id", "contact"],
        "properties": {
            "dead_id": {"type": "string", "pattern": _DEAD_ID_PATTERN},
            "reason": {
                "type": "string",
                "enum": [FAILED, UNDECODABLE],
                "description": "`failed`: failed 5 times; `undecodable`: unreadable entry.",
            },
            "error": {"type": "string", "description": "The last error."},
            "attempts": {"type": "integer", "minimum": 0},
            "died_at": {"type": "string", "format": "date-time"},
            "event_id": nullable({"type": "string"}),
            "kind": nullable({"type": "string"}),
            "contact": {
                "type": "object",
                "properties": {
                    "wa_id": nullable({"type": "string"}),
                    "user_id": nullable({"type": "string"}),
                },
            },
            "stream": {"type": "string", "description": "The inbound shard it came from."},
        },
    },
    "DeadEventPage": {
        "type": "object",
        "required": ["dead", "next_cursor", "total"],
        "properties": {
            "dead": {"type": "array", "items": ref("DeadEvent")},
            "next_cursor": nullable(
                {"type": "string", "description": "Pass as `cursor` for the next page."}
            ),
            "total": {"type": "integer", "description": "Dead events kept in all."},
        },
    },
    "DeadEventReplay": {
        "type": "object",
        "required": ["dead_id", "outcome", "event_id"],
        "properties": {
            "dead_id": {"type": "string"},
            "outcome": {"type": "string", "enum": [r.value for r in Replayed]},
            "event_id": nullable({"type": "string"}),
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/dead": {
        "get": {
            "operationId": "listDeadEvents",
            "summary": "Inbound events the workers gave up on, newest first",
            "description": "The newest DEAD_EVENTS_KEPT (default 100,000) are kept.",
            "tags": _TAGS,
            "parameters": page_parameters(
                default=DEFAULT_LIMIT, maximum=MAX_LIMIT, cursor_pattern=_DEAD_ID_PATTERN
            ),
            "responses": {
                "200": json_response("A page of dead events.", ref("DeadEventPage")),
                **error_responses(422),
            },
        }
    },
    "/v1/dead/{dead_id}/replay": {
        "post": {
            "operationId": "replayDeadEvent",
            "summary": "Put one dead event back on the inbound queue",
            "description": "For after the cause was fixed. The event is queued once and taken "
            "off the dead events; applying it is idempotent (a consent decision already "
            "recorded is not recorded again).",
            "tags": _TAGS,
            "parameters": [
                {
                    "name": "dead_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "examples": ["1733270400000-0"]},
                }
            ],
            "responses": {
                "202": json_response("Queued again.", ref("DeadEventReplay")),
                **error_responses(
                    404,
                    409,
                    descriptions={
                        404: "No such dead event (`unknown_dead_event`): never dead, already "
                        "replayed, trimmed or erased.",
                        409: "`undecodable`: it holds no event a worker can read.",
                    },
                ),
            },
        }
    },
    "/v1/dead/replay": {
        "post": {
            "operationId": "replayAllDeadEvents",
            "summary": "Put every dead event back on the inbound queue, oldest first",
            "description": "Undecodable entries stay and are listed.",
            "tags": _TAGS,
            "responses": {
                "202": json_response(
                    "What was queued again.",
                    {
                        "type": "object",
                        "required": ["replayed", "undecodable", "results"],
                        "properties": {
                            "replayed": {"type": "integer"},
                            "undecodable": {"type": "array", "items": {"type": "string"}},
                            "results": {"type": "array", "items": ref("DeadEventReplay")},
                        },
                    },
                ),
            },
        }
    },
}

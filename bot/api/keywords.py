"""`/v1/keywords`: the business's own keywords and reply texts, read, changed and their history.

Thin I/O around `bot.keyword_overrides` (the rules), `bot.keywords_store` (the versions) and
`bot.live_language` (putting a version in force). `PUT` takes the overlay as TOML
(`text/plain` or `application/toml`, the format of `KEYWORDS_FILE`) or as the same structure in
JSON, checks it against the locale files exactly as `KEYWORDS_FILE` is checked at startup, and
answers 422 naming each line and why when it is refused. An accepted overlay becomes a new
version: recorded with who sent it (`X-Changed-By`, else `API_TOKEN`) and from where, published
to every worker (within about a second) and in force in this process at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, Final

from aiohttp import web

from bot.api.errors import api_error
from bot.api.openapi import JSON, error_responses, json_response, nullable, ref
from bot.api.validation import MAX_BODY_BYTES, ApiProblem, answers_problems, read_json, read_text
from bot.appkeys import SERVICES
from bot.clientaddress import client_address
from bot.conversations import NO_OVERLAY_VERSION
from bot.keyword_overrides import KeywordOverlay, OverlayRefused, render_toml
from bot.keywords_store import API, MAX_HISTORY, StoredVersion
from bot.live_language import publish_version
from bot.services import Services

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "add_routes"]

#: Media types of a TOML body.
TOML_TYPES: Final = ("text/plain", "application/toml", "text/x-toml")
CHANGED_BY_HEADER: Final = "X-Changed-By"
DEFAULT_CHANGED_BY: Final = "API_TOKEN"
MAX_CHANGED_BY: Final = 128
DEFAULT_HISTORY: Final = 50


def _state(stored: StoredVersion | None, in_force: str) -> dict[str, Any]:
    if stored is None:
        return {
            "version": 0,
            "digest": None,
            "keywords_version": NO_OVERLAY_VERSION,
            "origin": "none",
            "changed_by": None,
            "remote": None,
            "changed_at": None,
            "overlay": {},
            "toml": "",
            "in_force_here": in_force,
        }
    return {**stored.to_json(), "in_force_here": in_force}


async def get_keywords(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    stored = await services.keyword_store.latest()
    return web.json_response(_state(stored, services.keywords.current.keywords_version))


def _changed_by(request: web.Request) -> str:
    given = request.headers.get(CHANGED_BY_HEADER, "").strip()
    if not given:
        return DEFAULT_CHANGED_BY
    if len(given) > MAX_CHANGED_BY or not given.isprintable():
        raise ApiProblem(
            422,
            "invalid_request",
            f"`{CHANGED_BY_HEADER}` is at most {MAX_CHANGED_BY} printable characters",
        )
    return given


async def _overlay_of(request: web.Request, services: Services) -> tuple[KeywordOverlay, str]:
    """The checked overlay of the body and the TOML text to keep; `ApiProblem` otherwise."""
    base = services.keywords.base
    try:
        if request.content_type == JSON:
            data, _ = await read_json(request)
            overlay = base.parse_data(data)
            return overlay, render_toml(overlay)
        if request.content_type in TOML_TYPES:
            text = await read_text(request)
            return base.parse(text), text
    except OverlayRefused as refused:
        detail = "; ".join(problem.describe() for problem in refused.problems)
        raise ApiProblem(422, "invalid_keywords", detail) from None
    raise ApiProblem(
        415,
        "unsupported_media_type",
        f"send the overlay as TOML ({', '.join(TOML_TYPES)}) or as {JSON} "
        f"(got {request.content_type or 'none'})",
    )


@answers_problems
async def put_keywords(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    changed_by = _changed_by(request)
    overlay, source = await _overlay_of(request, services)
    latest = await services.keyword_store.latest()
    if latest is not None and latest.digest == overlay.digest():
        state = _state(latest, services.keywords.current.keywords_version)
        return web.json_response({**state, "changed": False})
    if latest is None and overlay.empty:
        state = _state(None, services.keywords.current.keywords_version)
        return web.json_response({**state, "changed": False})
    base = services.keywords.base
    try:
        # About 0.1 s of CPU (the matcher): off the event loop.
        language = await asyncio.to_thread(base.build, overlay, NO_OVERLAY_VERSION)
    except ValueError as exc:
        raise ApiProblem(422, "invalid_keywords", str(exc)) from None
    stored = await services.keyword_store.record(
        overlay,
        source,
        origin=API,
        changed_by=changed_by,
        remote=client_address(request, services.settings.trusted_proxies),
    )
    services.keywords.put(replace(language, keywords_version=stored.label))
    await publish_version(services.redis, stored.label)
    return web.json_response({**_state(stored, stored.label), "changed": True})


async def keywords_history(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    try:
        limit = int(request.query.get("limit", DEFAULT_HISTORY))
    except ValueError:
        return api_error(422, "invalid_request", "`limit` is a whole number")
    if not 1 <= limit <= MAX_HISTORY:
        return api_error(422, "invalid_request", f"`limit` is 1 to {MAX_HISTORY}")
    versions = await services.keyword_store.history(limit)
    return web.json_response({"versions": [v.to_json(with_source=False) for v in versions]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/keywords", get_keywords)
    app.router.add_put("/v1/keywords", put_keywords)
    app.router.add_get("/v1/keywords/history", keywords_history)


_TAGS: Final = ["keywords"]
_WORDS: Final = {
    "type": "object",
    "properties": {
        "add": {"type": "array", "items": {"type": "string"}},
        "remove": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}
_VERSION_PROPERTIES: Final[dict[str, Any]] = {
    "version": {"type": "integer", "description": "The version's number; 0: none recorded."},
    "digest": nullable({"type": "string", "description": "SHA-256 of the canonical overlay."}),
    "keywords_version": {
        "type": "string",
        "description": "`<version>-<12 hex digits of digest>`: what the ledger's evidence of "
        "each consent decision records as `keywords_version`.",
        "examples": ["3-9f2c1a7b4e01"],
    },
    "origin": {"type": "string", "enum": ["file", "api", "none"]},
    "changed_by": nullable(
        {
            "type": "string",
            "description": "The file's path, or the caller's `X-Changed-By` (`API_TOKEN` when "
            "none was given).",
        }
    ),
    "remote": nullable({"type": "string", "description": "The API caller's address."}),
    "changed_at": nullable({"type": "string", "format": "date-time"}),
    "overlay": ref("KeywordOverlay"),
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "KeywordOverlay": {
        "type": "object",
        "description": "Per locale code (`en`, `es`, ...): words added to and removed from its "
        "opt-out, opt-in and help keywords, and reply texts replacing the locale file's "
        "(`replies`, by message key). The same structure as the TOML of `KEYWORDS_FILE`.",
        "additionalProperties": {
            "type": "object",
            "properties": {
                "opt_out": _WORDS,
                "opt_in": _WORDS,
                "help": _WORDS,
                "replies": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "additionalProperties": False,
        },
    },
    "KeywordsVersion": {
        "type": "object",
        "required": list(_VERSION_PROPERTIES),
        "properties": _VERSION_PROPERTIES,
    },
    "KeywordsState": {
        "type": "object",
        "required": [*_VERSION_PROPERTIES, "toml", "in_force_here"],
        "properties": {
            **_VERSION_PROPERTIES,
            "toml": {"type": "string", "description": "The overlay as TOML, as it was given."},
            "in_force_here": {
                "type": "string",
                "description": "The `keywords_version` the answering process is using (a "
                "worker takes a new version within about a second).",
            },
            "changed": {
                "type": "boolean",
                "description": "PUT only: false when the overlay was already in force.",
            },
        },
    },
}

_EXAMPLE_TOML: Final = """[en.opt_out]
add = ["ENOUGH"]
remove = ["STOP IT"]

[en.replies]
stop_all_confirmation = "{business} will not message you again. Reply START to come back."
"""

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/keywords": {
        "get": {
            "operationId": "getKeywords",
            "summary": "The business's keywords and reply texts in force, and their version",
            "tags": _TAGS,
            "responses": {"200": json_response("The version in force.", ref("KeywordsState"))},
        },
        "put": {
            "operationId": "putKeywords",
            "summary": "Replace the business's keywords and reply texts",
            "description": "The whole overlay (what is not in it returns to the locale files), "
            "as TOML (`text/plain` or `application/toml`; the format of `KEYWORDS_FILE`) or "
            "JSON. Checked like `KEYWORDS_FILE` at startup: a refusal is 422 "
            "`invalid_keywords`, its detail naming each line and why. Accepted, it is a new "
            "version, in force on every worker within about a second. "
            f"`{CHANGED_BY_HEADER}` names who made the change in the history. Bodies up to "
            f"{MAX_BODY_BYTES // 1024} KiB.",
            "tags": _TAGS,
            "parameters": [
                {
                    "name": CHANGED_BY_HEADER,
                    "in": "header",
                    "description": "Who makes the change, kept in the history.",
                    "schema": {"type": "string", "maxLength": MAX_CHANGED_BY},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "text/plain": {
                        "schema": {"type": "string"},
                        "examples": {"toml": {"value": _EXAMPLE_TOML}},
                    },
                    JSON: {"schema": ref("KeywordOverlay")},
                },
            },
            "responses": {
                "200": json_response("The version now in force.", ref("KeywordsState")),
                **error_responses(
                    400,
                    413,
                    415,
                    422,
                    descriptions={
                        413: f"The body is over {MAX_BODY_BYTES // 1024} KiB (`body_too_large`).",
                        415: "The body is neither TOML nor JSON (`unsupported_media_type`).",
                        422: "Refused (`invalid_keywords`: each line and why), or an invalid "
                        "`X-Changed-By` (`invalid_request`).",
                    },
                ),
            },
        },
    },
    "/v1/keywords/history": {
        "get": {
            "operationId": "listKeywordVersions",
            "summary": "Every keyword version, newest first: who changed what, when",
            "tags": _TAGS,
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_HISTORY,
                        "default": DEFAULT_HISTORY,
                    },
                }
            ],
            "responses": {
                "200": json_response(
                    "The versions.",
                    {
                        "type": "object",
                        "required": ["versions"],
                        "properties": {
                            "versions": {"type": "array", "items": ref("KeywordsVersion")}
                        },
                    },
                ),
                **error_responses(422),
            },
        }
    },
}

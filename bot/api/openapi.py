"""`GET /v1/openapi.json`: the OpenAPI 3.1 description of the business API.

Each API module describes its own routes next to their handlers (`OPENAPI_PATHS`, and the JSON
Schemas they use in `OPENAPI_SCHEMAS`); this module only merges the modules named in
`API_MODULES`, adds what every operation shares (bearer auth and its 401, the error shape) and
serves the result without auth, so a client generator or schemathesis can read it. The request
schemas are also what `bot.api.validation` checks bodies with: one source of truth.

Conventions for a module's fragments:
- `OPENAPI_PATHS = {"/v1/…": {"post": {operation}}}`; every operation has an `operationId`, a
  `summary`, `tags` and `responses` with a JSON schema for each status it can answer.
- Errors use `error_responses(404, 422, …)`; a body-taking operation includes
  `BODY_ERROR_STATUSES` (400, 413, 415, 422). Do not add 401: it is added to every operation
  that needs the token (an operation with `"security": []` is public).
- Schemas are named in CamelCase, unique across modules (a clash is a startup error), and
  referenced with `ref("Name")`; shared ones (`Error`) live here.
"""

from __future__ import annotations

import copy
import functools
import importlib
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version
from typing import Any, Final

from aiohttp import web

API_MODULES: Final = (
    "bot.api.contacts",
    "bot.api.optins",
    "bot.api.messages",
    "bot.api.records",
    "bot.api.campaigns",
    "bot.api.crm",
    "bot.api.dead",
    "bot.api.keywords",
)
OPENAPI_VERSION: Final = "3.1.0"
SECURITY_SCHEME: Final = "bearerAuth"
DOCUMENT_PATH: Final = "/v1/openapi.json"
JSON: Final = "application/json"

STATUS_DESCRIPTIONS: Final[Mapping[int, str]] = {
    400: "The body is not valid JSON (`invalid_json`).",
    401: "A valid bearer token (`API_TOKEN`) is required (`unauthorized`).",
    404: "No such contact (`unknown_contact`).",
    409: "Refused in the current state; `error` says why.",
    413: "The body is over 64 KiB (`body_too_large`).",
    415: "The body is not `application/json` (`unsupported_media_type`).",
    422: "The request is invalid or refused; `error` says why (`invalid_request` names the field).",
}

#: The 400 of the `/v1/contacts/{contact}…` routes.
CONTACT_ID_ERROR: Final[Mapping[int, str]] = {
    400: "`{contact}` cannot be a contact id: NUL or another control character, a path "
    "character (`/`, `\\`, `..`) or over 128 characters (`invalid_contact_id`).",
}

#: The `{contact}` path parameter every `/v1/contacts/{contact}/…` route takes.
CONTACT_PARAMETER: Final[dict[str, Any]] = {
    "name": "contact",
    "in": "path",
    "required": True,
    "description": "A wa_id (the digits of the phone number, no `+`) or a business-scoped user "
    "id (`CC.digits`); a former number of the contact finds it too.",
    "schema": {
        "type": "string",
        "pattern": "^([0-9]{1,15}|[A-Z]{2}\\.[A-Za-z0-9]{1,64})$",
        "examples": ["34612345678", "US.13491208655302741918"],
    },
}

COMMON_SCHEMAS: Final[dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "Every error of the API.",
        "required": ["error", "detail"],
        "properties": {
            "error": {
                "type": "string",
                "description": "A stable, machine-readable code (`invalid_request`, "
                "`unknown_contact`, `opted_out`...).",
                "examples": ["invalid_request"],
            },
            "detail": {"type": "string", "description": "What went wrong, for a person."},
        },
        "additionalProperties": False,
    },
}


def nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` or JSON null (OpenAPI 3.1 has no `nullable`: null is one more type)."""
    return {"anyOf": [dict(schema), {"type": "null"}]}


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema `name`."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": dict(schema)}}


def json_response(description: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": json_content(schema)}


def json_request_body(
    schema: Mapping[str, Any],
    description: str = "",
    examples: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A required JSON request body; `examples` maps a name to an example body."""
    body: dict[str, Any] = {"required": True, "content": json_content(schema)}
    if description:
        body["description"] = description
    if examples:
        body["content"][JSON]["examples"] = {
            name: {"value": dict(value)} for name, value in examples.items()
        }
    return body


def error_responses(
    *statuses: int, descriptions: Mapping[int, str] | None = None
) -> dict[str, Any]:
    """`responses` entries for these error statuses, each with the `Error` schema."""
    own = dict(descriptions or {})
    return {
        str(status): json_response(own.get(status) or STATUS_DESCRIPTIONS[status], ref("Error"))
        for status in statuses
    }


def package_version() -> str:
    try:
        return distribution_version("optin-bot")
    except PackageNotFoundError:
        return "0.0.0"


def _merge_paths(target: dict[str, Any], paths: Mapping[str, Any], origin: str) -> None:
    for path, operations in paths.items():
        if not path.startswith("/v1/"):
            raise ValueError(f"{origin}: {path} is not under /v1/")
        merged = target.setdefault(path, {})
        for method, operation in operations.items():
            if method in merged:
                raise ValueError(f"{origin}: {method.upper()} {path} is described twice")
            merged[method] = copy.deepcopy(operation)


def _merge_schemas(target: dict[str, Any], schemas: Mapping[str, Any], origin: str) -> None:
    for name, schema in schemas.items():
        if name in target and target[name] != schema:
            raise ValueError(f"{origin}: schema {name} is already defined differently")
        target[name] = copy.deepcopy(schema)


def _self_description() -> dict[str, Any]:
    return {
        DOCUMENT_PATH: {
            "get": {
                "operationId": "getOpenApiDocument",
                "summary": "This document (OpenAPI 3.1); no token needed",
                "tags": ["meta"],
                "security": [],
                "responses": {
                    "200": json_response("The OpenAPI document.", {"type": "object"}),
                },
            }
        }
    }


def build_document(modules: Iterable[str] = API_MODULES) -> dict[str, Any]:
    """The OpenAPI document for the API modules named in `modules`."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    _merge_schemas(schemas, COMMON_SCHEMAS, __name__)
    _merge_paths(paths, _self_description(), __name__)
    for name in modules:
        module = importlib.import_module(name)
        _merge_schemas(schemas, getattr(module, "OPENAPI_SCHEMAS", {}), name)
        _merge_paths(paths, getattr(module, "OPENAPI_PATHS", {}), name)
    for operations in paths.values():
        for operation in operations.values():
            if operation.get("security") != []:
                operation.setdefault("responses", {}).update(error_responses(401))
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "optin-bot business API",
            "version": package_version(),
            "description": (
                "Record consent captured outside WhatsApp, read each contact's consent, ledger "
                "and transcript, and send messages through the consent gate. Every error is "
                '`{"error": CODE, "detail": "…"}`. `{contact}` is a wa_id (the digits of the '
                "phone number) or a business-scoped user id (`CC.digits`)."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The `API_TOKEN` of the deployment.",
                }
            },
        },
        "security": [{SECURITY_SCHEME: []}],
    }


@functools.cache
def document() -> dict[str, Any]:
    """The document of `API_MODULES`, built once per process."""
    return build_document()


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())


def add_routes(app: web.Application) -> None:
    app.router.add_get(DOCUMENT_PATH, openapi_json)

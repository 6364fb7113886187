"""Reading and checking a `/v1` request body against the schema the OpenAPI document publishes.

The JSON Schemas in each API module's `OPENAPI_SCHEMAS` are both what `/v1/openapi.json` shows
and what the body is validated with here (jsonschema, draft 2020-12, the dialect of OpenAPI 3.1),
so the document can never promise a body the service refuses, or the other way round.

Every refusal is an `ApiProblem`, rendered as `{"error": CODE, "detail": "…"}`: 415 for a body
that is not `application/json`, 413 over 64 KiB, 400 for JSON that does not parse, 422 (code
`invalid_request`, or the operation's own code for a field) naming the first offending field.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from bot.api.errors import api_error

MAX_BODY_BYTES: Final = 64 * 1024
#: How deeply a body's objects and arrays may nest (ours nest four levels at most).
MAX_DEPTH: Final = 32
JSON_MEDIA_TYPE: Final = "application/json"
#: The statuses a body-taking operation may answer besides its own (see `read_body`).
BODY_ERROR_STATUSES: Final = (400, 413, 415, 422)
#: A schema keyword (an OpenAPI extension) giving the detail of a failed `oneOf`, `anyOf` or
#: `pattern`, whose own messages mean little to a person.
ERROR_DETAIL_KEYWORD: Final = "x-error-detail"
_EXPLAINED_KEYWORDS: Final = ("oneOf", "anyOf", "pattern")


class ApiProblem(Exception):
    """A request the API refuses; raised anywhere in a handler, answered by `answers_problems`."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    def response(self) -> web.Response:
        return api_error(self.status, self.code, self.detail)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def answers_problems(handler: Handler) -> Handler:
    """Turn an `ApiProblem` raised by `handler` into its JSON error response."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiProblem as problem:
            return problem.response()

    return wrapped


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def _read_limited(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiProblem(413, "body_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiProblem(413, "body_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _unstorable_text(value: Any, path: str = "", depth: int = 0) -> str | None:
    """The path of the first string (or field name) no database can store as text: one with
    a NUL character (PostgreSQL refuses it) or an unpaired surrogate (not UTF-8)."""
    if depth > MAX_DEPTH:
        raise RecursionError(path)
    if isinstance(value, str):
        return path if "\x00" in value or not _encodes(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = _join(path, key)
            if _unstorable_text(key, where) is not None:
                return where
            found = _unstorable_text(item, where, depth + 1)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable_text(item, _join(path, str(index)), depth + 1)
            if found is not None:
                return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def read_json(request: web.Request) -> tuple[Any, bytes]:
    """The parsed JSON body and its bytes; 415, 413, 400 or 422 (text that cannot be stored)
    as an `ApiProblem`."""
    if request.content_type != JSON_MEDIA_TYPE:
        raise ApiProblem(
            415,
            "unsupported_media_type",
            f"send the body as {JSON_MEDIA_TYPE} (got {request.content_type or 'none'})",
        )
    raw = await _read_limited(request)
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiProblem(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    try:
        where = _unstorable_text(body)
    except RecursionError:
        raise ApiProblem(
            400, "invalid_json", f"the body nests more than {MAX_DEPTH} levels deep"
        ) from None
    if where is not None:
        raise ApiProblem(
            422,
            "invalid_request",
            f"`{where or 'body'}` contains a NUL character or an unpaired surrogate",
        )
    return body, raw


async def read_text(request: web.Request) -> str:
    """A UTF-8 text body (up to `MAX_BODY_BYTES`) that a database can store: 413, or 422 for
    bytes that are not UTF-8 or hold a NUL character, as an `ApiProblem`."""
    raw = await _read_limited(request)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiProblem(422, "invalid_request", "the body is not UTF-8 text") from None
    if "\x00" in text:
        raise ApiProblem(422, "invalid_request", "the body contains a NUL character")
    return text


def _pointer(path: Iterable[Any]) -> str:
    return ".".join(str(part) for part in path)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _field_and_problem(error: ValidationError) -> tuple[str, str]:
    """(dotted path of the offending field, what is wrong with it)."""
    where = _pointer(error.absolute_path)
    keyword = error.validator
    value: Any = error.validator_value
    instance = error.instance
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    if "propertyNames" in error.relative_schema_path:
        return where, f"may not have a field named {_short(instance)}"
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = set(schema.get("properties", {}))
        extra = sorted(set(instance) - known)
        name = extra[0] if extra else "?"
        return _join(where, name), "unknown field"
    if keyword == "required" and isinstance(instance, dict):
        missing = [name for name in value if name not in instance]
        return _join(where, missing[0] if missing else "?"), "is required"
    if keyword in _EXPLAINED_KEYWORDS and ERROR_DETAIL_KEYWORD in schema:
        return where, str(schema[ERROR_DETAIL_KEYWORD])
    problems: dict[str, Callable[[], str]] = {
        "type": lambda: f"must be of type {value}",
        "enum": lambda: f"must be one of {', '.join(map(str, value))}",
        "const": lambda: f"must be {_short(value)}",
        "minLength": lambda: f"must be at least {value} characters",
        "maxLength": lambda: f"must be at most {value} characters",
        "pattern": lambda: f"must match {value}",
        "minItems": lambda: f"needs at least {value} items",
        "maxItems": lambda: f"takes at most {value} items",
        "uniqueItems": lambda: "must not repeat items",
        "minimum": lambda: f"must be at least {value}",
        "maximum": lambda: f"must be at most {value}",
        "maxProperties": lambda: f"takes at most {value} fields",
    }
    describe = problems.get(str(keyword))
    detail = describe() if describe is not None else error.message
    return where, detail if len(detail) <= 300 else detail[:297] + "..."


class BodySchema:
    """One operation's request body: the published schema `name` among `schemas`.

    `missing_codes` gives the error code of a missing (or null) top-level field whose absence is
    a reason of its own in the contract (a missing `business_name` is `no_business_name`).
    """

    def __init__(
        self,
        schemas: Mapping[str, Any],
        name: str,
        *,
        missing_codes: Mapping[str, str] | None = None,
    ) -> None:
        root = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": {"schemas": dict(schemas)},
            "$ref": f"#/components/schemas/{name}",
        }
        Draft202012Validator.check_schema(root)
        self.name = name
        self._validator = Draft202012Validator(root)
        self._missing_codes = dict(missing_codes or {})

    def problem(self, body: Any) -> ApiProblem | None:
        """Why `body` does not conform, or None."""
        errors = list(self._validator.iter_errors(body))
        if not errors:
            return None
        if isinstance(body, dict):
            for field, code in self._missing_codes.items():
                if body.get(field) is None:
                    return ApiProblem(422, code, f"`{field}` is required")
        chosen = best_match(errors)
        for error in errors:
            schema = error.schema if isinstance(error.schema, Mapping) else {}
            if error.validator in ("oneOf", "anyOf") and ERROR_DETAIL_KEYWORD in schema:
                chosen = error
        field, detail = _field_and_problem(chosen)
        return ApiProblem(
            422, "invalid_request", f"`{field}` {detail}" if field else f"the body {detail}"
        )

    async def read(self, request: web.Request) -> tuple[dict[str, Any], bytes]:
        """The request's body, checked; raises `ApiProblem` (400/413/415/422)."""
        body, raw = await read_json(request)
        problem = self.problem(body)
        if problem is not None:
            raise problem
        assert isinstance(body, dict)
        return body, raw

"""Cursor paging shared by the `/v1` list endpoints: one reading of `limit` and `cursor`, one
OpenAPI description of them, so every list refuses a bad page the same way."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.api.errors import api_error

__all__ = ["Page", "page_parameters", "read_page"]


@dataclass(frozen=True, slots=True)
class Page:
    """The page asked for: how many, and after which `next_cursor` (None: the first page)."""

    limit: int
    cursor: str | None


def read_page(
    query: Mapping[str, str],
    *,
    default: int,
    maximum: int,
    is_cursor: Callable[[str], bool],
) -> Page | web.Response:
    """The page `query` asks for, or the 422 answer that says what is wrong with it."""
    try:
        limit = int(query.get("limit", default))
    except ValueError:
        return api_error(422, "invalid_request", "`limit` is a whole number")
    if not 1 <= limit <= maximum:
        return api_error(422, "invalid_request", f"`limit` is 1 to {maximum}")
    cursor = query.get("cursor")
    if cursor is not None and not is_cursor(cursor):
        return api_error(422, "invalid_request", "`cursor` is a `next_cursor` of a previous page")
    return Page(limit, cursor)


def page_parameters(*, default: int, maximum: int, cursor_pattern: str) -> list[dict[str, Any]]:
    """The OpenAPI `limit` and `cursor` query parameters of a list endpoint."""
    return [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
        },
        {
            "name": "cursor",
            "in": "query",
            "description": "The `next_cursor` of the previous page.",
            "schema": {"type": "string", "pattern": cursor_pattern},
        },
    ]

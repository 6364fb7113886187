"""Every API error is JSON `{"error": CODE, "detail": "…"}` with the right status."""

from __future__ import annotations

from aiohttp import web


def api_error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)

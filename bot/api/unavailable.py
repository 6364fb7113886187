"""503, not 500, while Redis or the database is unreachable.

A request that meets a dead connection (a restarted PostgreSQL, Redis down) fails its first
statement; nothing is wrong with the request, and the next one finds fresh connections. So the
caller gets `503 {"error": "unavailable"}` with a `Retry-After` under `/v1` (plain text
elsewhere), never a stack trace, and the log gets one line rather than a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from bot.api.errors import api_error
from bot.transient import is_transient

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS: Final = 5


@web.middleware
async def unavailable_while_storage_is_down(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("%s %s: storage unreachable (%s)", request.method, request.path, exc)
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if request.path.startswith("/v1/"):
            response = api_error(
                503, "unavailable", "Redis or the database is unreachable; try again shortly"
            )
            response.headers.update(headers)
            return response
        return web.Response(
            status=503, text="Temporarily unavailable; try again shortly.", headers=headers
        )

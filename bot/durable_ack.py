"""Acknowledge a write only once it is durable, on the embedded store too.

With a Redis server, a write is durable once the server has it (its own persistence is the
operator's choice). The embedded store (`memory://`) lives in this process, so a webhook answered
200 or a message answered 202 would be lost with the process; when it is saved to a file
(`bot.redis_snapshot`), this middleware holds the answer to every successful write request until
a snapshot taken after the handler ran is on disk. A failed save answers 503, so that Meta and API
clients retry rather than believe it kept.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.appkeys import SERVICES

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _persisted(request: web.Request) -> web.StreamResponse | None:
    services = request.app.get(SERVICES)
    if services is None or services.snapshot is None:
        return None
    try:
        await services.snapshot.persisted()
    except Exception as exc:
        log.error(
            "%s %s: not acknowledged, the embedded store could not be saved: %r",
            request.method,
            request.path,
            exc,
        )
        return web.json_response(
            {"error": "unavailable", "detail": "could not save the embedded store; retry"},
            status=503,
            headers={"Retry-After": "5"},
        )
    return None


@web.middleware
async def persist_before_acknowledging(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    if request.method not in WRITE_METHODS:
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects after a form post acknowledge a write too
            failed = await _persisted(request)
            if failed is not None:
                return failed
        raise
    if response.status < 500:
        failed = await _persisted(request)
        if failed is not None:
            return failed
    return response

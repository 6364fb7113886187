"""Bearer-token protection of `/v1`: `API_TOKEN`, compared in constant time.

Without `API_TOKEN`, `/v1` answers 401 except in sandbox mode, where a business trying optin-bot
on its laptop can call it without one (nothing can reach WhatsApp from a sandbox).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.api.errors import api_error
from bot.appkeys import SETTINGS
from bot.settings import Settings


def authorised(settings: Settings, header: str | None) -> bool:
    if settings.api_token is None:
        return settings.sandbox
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), settings.api_token.encode())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    protected = request.path.startswith("/v1/") and request.path != "/v1/openapi.json"
    if protected and not authorised(request.app[SETTINGS], request.headers.get("Authorization")):
        response = api_error(401, "unauthorized", "a valid bearer token (API_TOKEN) is required")
        response.headers["WWW-Authenticate"] = 'Bearer realm="optin-bot"'
        return response
    return await handler(request)

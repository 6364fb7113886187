"""The sandbox chat: try optin-bot as a customer in the browser before connecting Meta.

Only in sandbox mode (no WhatsApp access token): nothing can reach WhatsApp then, and the pages
need no login. With a token the routes are not registered at all, so `/sandbox` answers 404.
The person trying it types and taps as a customer; each message is posted, signed like Meta's,
to the app's own `/webhook`, so the production path (signature, normaliser, streams, workers,
flows, ledger, sender) is what answers.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from bot.sandbox import handlers
from bot.sandbox.csrf import CSRF, CsrfGuard
from bot.sandbox.relay import relay_context
from bot.settings import Settings

SANDBOX_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = SANDBOX_DIR / "templates"
STATIC_DIR = SANDBOX_DIR / "static"
STATIC_PREFIX = "/sandbox/static/"


def add_routes(app: web.Application, settings: Settings) -> None:
    """Register the sandbox (its pages, API and static files) when `settings` is sandbox mode."""
    if not settings.sandbox:
        return
    app[CSRF] = CsrfGuard()
    app.cleanup_ctx.append(relay_context(settings.app_secret, settings.api_token))
    router = app.router
    router.add_get("/sandbox", handlers.start_page)
    router.add_post("/sandbox/start", handlers.start_chat)
    router.add_get("/sandbox/chat", handlers.chat_page)
    router.add_post("/sandbox/api/send", handlers.send)
    router.add_get("/sandbox/api/state", handlers.state)
    router.add_post("/sandbox/api/optin", handlers.start_optin)
    router.add_post("/sandbox/api/reconsent", handlers.start_reconsent)
    router.add_static(STATIC_PREFIX, STATIC_DIR, name="sandbox_static", append_version=False)

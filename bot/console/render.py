"""Rendering console pages: the shared context every template gets, and the security headers.

Every console response is `no-store` (pages hold personal data), cannot be framed, and carries a
Content-Security-Policy that allows only the app's own scripts: customer-written text is escaped
by the templates, and even a slip there could not run a script from anywhere else or inline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import aiohttp_jinja2
from aiohttp import web

from bot.appkeys import SETTINGS
from bot.console.labels import load_labels, plain, word
from bot.console.sessions import AgentSession

_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'{inline}; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def secure(response: web.StreamResponse, *, inline_styles: bool = False) -> web.StreamResponse:
    """Add the console's security headers (inline styles only where a diagram needs them)."""
    headers = response.headers
    headers["Content-Security-Policy"] = _CSP.format(
        inline=" 'unsafe-inline'" if inline_styles else ""
    )
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cache-Control"] = "no-store"
    return response


def redirect(location: str) -> web.Response:
    """303 See Other to ``location`` (after a form, or to the login page)."""
    return web.Response(status=303, headers={"Location": location})


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    session: AgentSession | None,
    status: int = 200,
    inline_styles: bool = False,
) -> web.Response:
    """A console page: ``template`` with the agent, CSRF token and banners filled in."""
    settings = request.app[SETTINGS]
    full: dict[str, Any] = {
        "agent": session.agent if session else None,
        "csrf": session.csrf if session else "",
        "open_console": session.open_console if session else False,
        "sandbox": settings.sandbox,
        "business_name": settings.business_name,
        "section": "",
        "notice": None,
        "error": None,
    }
    labels = load_labels(settings.default_locale)
    # `plain('statuses', 'opted_out')` -> "opted out" with the code on hover; `word` the bare
    # word (for attributes and option texts).
    full["plain"] = lambda kind, code: plain(labels, kind, code)
    full["word"] = lambda kind, code: word(labels, kind, code)
    full.update(context)
    response = aiohttp_jinja2.render_template(template, request, full, status=status)
    secure(response, inline_styles=inline_styles)
    return response


def refusal(
    request: web.Request, status: int, title: str, detail: str, *, login_link: bool = False
) -> web.Response:
    """A plain page saying why the console refused (401, 403, 404, 422, 429)."""
    return render(
        request,
        "console/refused.html",
        {"title": title, "detail": detail, "login_link": login_link},
        session=None,
        status=status,
    )

"""Who may use the console, and the checks every request passes.

Agents log in with `API_TOKEN` (as "admin") or their own token from `AGENT_TOKENS`; the session
lives in Redis (``bot.console.sessions``). Every page is wrapped by ``console_page``: no session,
no page (a browser is sent to the login form, anything else gets 401); every POST must carry the
session's CSRF token (compared in constant time) and must not come from another site. The login
form, which has no session yet, is protected by a double-submit cookie.

Without `API_TOKEN` and `AGENT_TOKENS` the console answers 401, except in sandbox mode, where it is
open, as `/v1` is, and says so on every page.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import quote

from aiohttp import web

from bot.appkeys import SERVICES, SETTINGS
from bot.clientaddress import came_over_tls, client_address
from bot.console.audit import AuditLog
from bot.console.render import redirect, refusal, render, secure
from bot.console.sessions import (
    SANDBOX_AGENT,
    SESSION_TTL,
    AgentSession,
    SessionStore,
    agent_for_token,
    can_log_in,
    console_open,
)
from bot.console.throttle import FAILURE_WINDOW_S, LoginAttempt, Slot

COOKIE: Final = "optin_console"
LOGIN_COOKIE: Final = "optin_console_login"
CSRF_FIELD: Final = "csrf"
LOGIN_PATH: Final = "/console/login"
HOME_PATH: Final = "/console"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PageHandler = Callable[[web.Request, AgentSession], Awaitable[web.StreamResponse]]


def sessions_of(request: web.Request) -> SessionStore:
    return SessionStore(request.app[SERVICES].redis, request.app[SETTINGS])


def _set_cookie(
    request: web.Request,
    response: web.StreamResponse,
    name: str,
    value: str,
    *,
    path: str,
    max_age: int,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="Strict",
        # Behind a TLS-terminating proxy the request itself is plain HTTP.
        secure=came_over_tls(request, request.app[SETTINGS].trusted_proxies),
    )


def _cross_site(request: web.Request) -> bool:
    """A browser says the request comes from another site (a forged form post)."""
    return request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none")


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def _closed(request: web.Request) -> web.Response:
    return refusal(
        request,
        401,
        "The console is closed",
        "No API_TOKEN or AGENT_TOKENS is configured, and this is not sandbox mode, so nobody "
        "can log in. Set API_TOKEN (or AGENT_TOKENS) and restart.",
    )


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: never another site (an open redirect)."""
    if (
        target
        and target.startswith(HOME_PATH)
        and not target.startswith("//")
        and "\\" not in target
    ):
        return target
    return HOME_PATH


def console_page(handler: PageHandler) -> Handler:
    """Run ``handler`` for a logged-in agent, after the CSRF check of a POST."""

    @functools.wraps(handler)
    async def page(request: web.Request) -> web.StreamResponse:
        settings = request.app[SETTINGS]
        if not can_log_in(settings):
            return _closed(request)
        store = sessions_of(request)
        session = await store.get(request.cookies.get(COOKIE))
        new_cookie = None
        if session is None and console_open(settings) and request.method in ("GET", "HEAD"):
            new_cookie, session = await store.create(SANDBOX_AGENT)
        if session is None:
            if request.method in ("GET", "HEAD"):
                location = f"{LOGIN_PATH}?next={quote(request.path_qs, safe='')}"
                return secure(redirect(location))
            return refusal(
                request, 401, "Not logged in", "Log in to the console first.", login_link=True
            )
        if request.method == "POST":
            form = await request.post()
            given = form.get(CSRF_FIELD)
            if _cross_site(request) or not isinstance(given, str) or not _same(given, session.csrf):
                return refusal(
                    request,
                    403,
                    "Refused",
                    "This form has no valid CSRF token (or came from another site). Reload the "
                    "page and try again.",
                )
        response = await handler(request, session)
        if new_cookie is not None:
            _set_cookie(
                request,
                response,
                COOKIE,
                new_cookie,
                path=HOME_PATH,
                max_age=int(SESSION_TTL.total_seconds()),
            )
        return response

    return page


async def login_form(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if not can_log_in(settings):
        return _closed(request)
    next_path = _safe_next(request.query.get("next"))
    if console_open(settings) or await sessions_of(request).get(request.cookies.get(COOKIE)):
        return secure(redirect(next_path))
    return _login_page(request, next_path, error=None, status=200)


def _login_page(
    request: web.Request, next_path: str, *, error: str | None, status: int
) -> web.Response:
    nonce = secrets.token_urlsafe(32)
    response = render(
        request,
        "console/login.html",
        {"login_csrf": nonce, "next": next_path, "error": error},
        session=None,
        status=status,
    )
    _set_cookie(request, response, LOGIN_COOKIE, nonce, path=LOGIN_PATH, max_age=3600)
    return response


def _remote(request: web.Request) -> str:
    """The agent's own address, also behind a load balancer (`TRUSTED_PROXIES`)."""
    return client_address(request, request.app[SETTINGS].trusted_proxies)


async def login(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if not can_log_in(settings):
        return _closed(request)
    form = await request.post()
    next_path = _safe_next(str(form.get("next") or ""))
    nonce = form.get(CSRF_FIELD)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if _cross_site(request) or not isinstance(nonce, str) or not _same(nonce, cookie):
        return refusal(
            request,
            403,
            "Refused",
            "The login form had expired. Open it again and log in.",
            login_link=True,
        )
    redis = request.app[SERVICES].redis
    attempt = LoginAttempt(redis, _remote(request))
    slot = await attempt.take()
    if slot is not Slot.GO:
        return refusal(
            request,
            429,
            "Too many attempts",
            f"Too many wrong tokens from this address: wait {FAILURE_WINDOW_S // 60} minutes."
            if slot is Slot.LOCKED
            else "Too many logins from this address at once: try again in a moment.",
        )
    token = form.get("token")
    agent = agent_for_token(settings, token) if isinstance(token, str) else None
    audit = AuditLog(redis)
    if agent is None:
        await attempt.failed()
        await audit.record(agent="", action="login_refused", detail={"remote": _remote(request)})
        return _login_page(request, next_path, error="That token is not valid.", status=401)
    await attempt.succeeded()
    session_id, _ = await sessions_of(request).create(agent)
    await audit.record(agent=agent, action="login", detail={"remote": _remote(request)})
    response = secure(redirect(next_path))
    _set_cookie(
        request,
        response,
        COOKIE,
        session_id,
        path=HOME_PATH,
        max_age=int(SESSION_TTL.total_seconds()),
    )
    response.del_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
    return response


@console_page
async def logout(request: web.Request, session: AgentSession) -> web.StreamResponse:
    await sessions_of(request).end(request.cookies.get(COOKIE))
    response = secure(redirect(LOGIN_PATH))
    response.del_cookie(COOKIE, path=HOME_PATH)
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get(LOGIN_PATH, login_form)
    app.router.add_post(LOGIN_PATH, login)
    app.router.add_post("/console/logout", logout)

"""The sandbox's pages and the small JSON API its script calls.

`GET /sandbox` picks a number and a language, `GET /sandbox/chat` is the phone-like chat with the
consent panel and the business panel. The page's script posts the customer's messages to
`POST /sandbox/api/send` (relayed, signed, to `/webhook`), polls `GET /sandbox/api/state` for the
bot's answers and the consent state (HTML fragments rendered by the same autoescaped templates as
the page), and starts business requests with `POST /sandbox/api/optin` and `/reconsent`. Every
POST needs the page's CSRF token. Without JavaScript the forms still work: they post
form-encoded and are redirected back to the chat.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import aiohttp_jinja2
from aiohttp import web

from bot.appkeys import SERVICES
from bot.sandbox import business
from bot.sandbox.csrf import CSRF, FORM_FIELD, HEADER
from bot.sandbox.envelope import (
    InvalidAction,
    new_wamid,
    parse_action,
    valid_wa_id,
    webhook_envelope,
)
from bot.sandbox.relay import RELAY, RelayUnavailable, local_base_url
from bot.sandbox.view import bubbles_after, latest_bubbles, read_panel
from bot.services import Services

log = logging.getLogger(__name__)

# North American numbers 555-0100 to 555-0199 are reserved for fiction: valid in the numbering
# plan (the business API accepts them) and never anybody's phone.
FICTIONAL_AREA_CODES = ("202", "212", "305", "415", "617", "702")


def random_number() -> str:
    """A made-up customer number such as 1 415 555 0142, as WhatsApp's wa_id digits."""
    area = random.choice(FICTIONAL_AREA_CODES)
    return f"1{area}55501{random.randrange(100):02d}"


def _error(status: int, message: str, *, for_script: bool = True) -> web.Response:
    """JSON `{"error": …}` for the page's script; one plain line for a form posted without it."""
    if not for_script:
        return web.Response(status=status, text=f"{message}.", content_type="text/plain")
    return web.json_response({"error": message}, status=status)


def _chat_url(wa_id: str) -> str:
    return "/sandbox/chat?" + urlencode({"wa_id": wa_id})


def _locales(services: Services) -> list[tuple[str, str]]:
    return sorted((code, c.name) for code, c in services.language.catalogs.items())


async def _input(request: web.Request) -> tuple[dict[str, Any], bool]:
    """(the request's fields, whether it came from the script as JSON)."""
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError:
            return {}, True
        return (data if isinstance(data, dict) else {}), True
    form = await request.post()
    fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    fields["categories"] = [v for v in form.getall("categories", []) if isinstance(v, str)]
    return fields, False


def _refused(
    request: web.Request, data: Mapping[str, Any], from_script: bool
) -> web.Response | None:
    """None for a genuine request; else 403, as JSON for the script or a line for a person."""
    supplied = request.headers.get(HEADER) or data.get(FORM_FIELD)
    problem = request.app[CSRF].check(request, supplied if isinstance(supplied, str) else None)
    if problem is None:
        return None
    return _error(403, problem, for_script=from_script)


def _page(request: web.Request, template: str, context: dict[str, Any]) -> web.Response:
    guard = request.app[CSRF]
    session_id, new = guard.session_for_page(request)
    context["csrf_token"] = guard.token_for(session_id)
    response = aiohttp_jinja2.render_template(template, request, context)
    response.headers["Cache-Control"] = "no-store"
    if new:
        guard.set_cookie(response, session_id)
    return response


async def _start_page(
    request: web.Request, *, number: str, locale: str, error: str | None, status: int = 200
) -> web.Response:
    services = request.app[SERVICES]
    response = _page(
        request,
        "sandbox/start.html",
        {
            "number": number,
            "locales": _locales(services),
            "default_locale": locale,
            "recent": await business.sandbox_numbers(services),
            "business_name": services.settings.business_name,
            "error": error,
        },
    )
    response.set_status(status)
    return response


async def start_page(request: web.Request) -> web.Response:
    locale = request.app[SERVICES].language.default_locale
    return await _start_page(request, number=random_number(), locale=locale, error=None)


async def start_chat(request: web.Request) -> web.StreamResponse:
    """The start form: remember the number, record its language, open the chat."""
    services = request.app[SERVICES]
    data, from_script = await _input(request)
    wa_id = str(data.get("wa_id", "")).strip().removeprefix("+")
    locale = str(data.get("locale", services.language.default_locale))
    if locale not in services.language.catalogs:
        locale = services.language.default_locale
    refused = _refused(request, data, from_script)
    if refused is not None:
        return refused
    if not valid_wa_id(wa_id):
        return await _start_page(
            request,
            number=wa_id or random_number(),
            locale=locale,
            error="Enter 6 to 15 digits (country code first, no '+') and pick a language.",
            status=422,
        )
    await services.contacts.resolve(wa_id=wa_id, user_id=None, locale=locale)
    await business.remember_contact(services, wa_id)
    raise web.HTTPSeeOther(_chat_url(wa_id))


async def chat_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    wa_id = request.query.get("wa_id", "")
    if not valid_wa_id(wa_id):
        raise web.HTTPSeeOther("/sandbox")
    contact = await services.contacts.find(wa_id)
    locale = (contact.locale if contact else None) or services.language.default_locale
    bubbles = await latest_bubbles(services, contact.id) if contact and contact.id else []
    panel = await read_panel(services, wa_id, locale)
    return _page(
        request,
        "sandbox/chat.html",
        {
            "wa_id": wa_id,
            "locale": locale,
            "locale_name": services.language.catalogs[locale].name,
            "bubbles": bubbles,
            "after": bubbles[-1].id if bubbles else 0,
            "panel": panel,
            "categories": panel.consents,
            "policy_version": business.next_policy_version(services.settings.policy_version),
            "business_name": services.settings.business_name,
            "signed": services.settings.app_secret is not None,
        },
    )


async def send(request: web.Request) -> web.StreamResponse:
    """The customer's message, as Meta's webhook, to this app's `/webhook`."""
    services = request.app[SERVICES]
    data, from_script = await _input(request)
    refused = _refused(request, data, from_script)
    if refused is not None:
        return refused
    wa_id = str(data.get("wa_id", ""))
    try:
        action = parse_action(data)
        wamid = new_wamid()
        payload = webhook_envelope(
            action,
            wa_id=wa_id,
            phone_number_id=services.settings.phone_number_id,
            wamid=wamid,
            now=datetime.now(UTC),
        )
    except InvalidAction as exc:
        return _error(422, str(exc), for_script=from_script)
    try:
        result = await request.app[RELAY].webhook(local_base_url(request), payload)
    except (RelayUnavailable, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("sandbox: cannot reach the webhook: %s", exc)
        return _error(502, "the webhook could not be reached", for_script=from_script)
    if not result.accepted:
        problem = f"the webhook answered {result.status}: {result.problem}"
        return _error(502, problem, for_script=from_script)
    await business.remember_contact(services, wa_id)
    if not from_script:
        raise web.HTTPSeeOther(_chat_url(wa_id))
    return web.json_response(
        {"wamid": wamid, "shown": action.shown, "webhook": dict(result.answer)}
    )


async def state(request: web.Request) -> web.Response:
    """New bubbles after `after` and, when it changed, the consent panel."""
    services = request.app[SERVICES]
    wa_id = request.query.get("wa_id", "")
    if not valid_wa_id(wa_id):
        return _error(422, "wa_id: 6 to 15 digits")
    try:
        after = int(request.query.get("after", "0"))
    except ValueError:
        return _error(422, "after: a message id")
    contact = await services.contacts.find(wa_id)
    locale = (contact.locale if contact else None) or services.language.default_locale
    bubbles = await bubbles_after(services, contact.id, after) if contact and contact.id else []
    messages = [
        {
            "id": b.id,
            "wamid": b.wamid,
            "html": aiohttp_jinja2.render_string("sandbox/bubble.html", request, {"b": b}),
        }
        for b in bubbles
    ]
    panel_html = aiohttp_jinja2.render_string(
        "sandbox/panel.html", request, {"panel": await read_panel(services, wa_id, locale)}
    )
    version = hashlib.sha256(panel_html.encode()).hexdigest()[:16]
    answer: dict[str, Any] = {
        "messages": messages,
        "after": bubbles[-1].id if bubbles else after,
        "panel_version": version,
    }
    if request.query.get("panel") != version:
        answer["panel_html"] = panel_html
    response = web.json_response(answer)
    response.headers["Cache-Control"] = "no-store"
    return response


BusinessAct = Callable[[web.Request, Mapping[str, Any]], Awaitable[business.Requested]]


async def _business(request: web.Request, act: BusinessAct) -> web.StreamResponse:
    data, from_script = await _input(request)
    refused = _refused(request, data, from_script)
    if refused is not None:
        return refused
    try:
        done = await act(request, data)
    except business.RequestError as exc:
        return _error(422, str(exc), for_script=from_script)
    except (RelayUnavailable, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("sandbox: cannot reach the business API: %s", exc)
        return _error(502, "the business API could not be reached", for_script=from_script)
    if not from_script:
        raise web.HTTPSeeOther(_chat_url(str(data.get("wa_id", ""))))
    return web.json_response({"contacts": done.contacts, "requests": list(done.references)})


def _categories(data: Mapping[str, Any]) -> list[str]:
    value = data.get("categories", [])
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


async def start_optin(request: web.Request) -> web.StreamResponse:
    """Business panel: ask this customer for a double opt-in."""

    async def act(request: web.Request, data: Mapping[str, Any]) -> business.Requested:
        wa_id = str(data.get("wa_id", ""))
        if not valid_wa_id(wa_id):
            raise business.RequestError("wa_id: 6 to 15 digits")
        return await business.request_optin(
            request.app[SERVICES],
            request.app[RELAY],
            local_base_url(request),
            wa_id,
            _categories(data),
        )

    return await _business(request, act)


async def start_reconsent(request: web.Request) -> web.StreamResponse:
    """Business panel: a re-consent campaign for every sandbox customer."""

    async def act(request: web.Request, data: Mapping[str, Any]) -> business.Requested:
        services = request.app[SERVICES]
        policy = str(data.get("policy_version") or services.settings.policy_version)
        return await business.request_reconsent(
            services, request.app[RELAY], local_base_url(request), _categories(data), policy
        )

    return await _business(request, act)

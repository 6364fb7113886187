"""A contact's page: who they are, where their consent and window stand, and their timeline;
the reveal of their number (logged) and the downloads.

Everything an agent needs to answer "why did this customer stop getting offers?" is on one
page: the current status per category with its source, the timeline with the customer's words,
our replies with their delivery ticks, the conversation's steps and each ledger row's evidence.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from bot.appkeys import SERVICES
from bot.console.audit import AuditLog
from bot.console.auth import console_page
from bot.console.display import full_number, mask_number, when, window_state
from bot.console.exports import proof_document, transcript_json, transcript_text
from bot.console.render import refusal, render, secure
from bot.console.sessions import AgentSession
from bot.console.timeline import (
    EXPORT_LIMIT,
    Kind,
    TimelineFilter,
    build_timeline,
    group_decisions,
)
from bot.conversations import Language
from bot.db.engine import session_factory
from bot.db.models import Contact
from flows.consent import ConsentStatus

NOTICES: Final = {
    "withdrawn": "Withdrawn. The ledger row names you and your note.",
    "optin_requested": "Double opt-in requested: the customer gets the prompt and must answer "
    "YES themselves.",
}


@dataclass(frozen=True, slots=True)
class CategoryRow:
    name: str
    display: str
    kind: str
    status: str
    since: str
    source: str
    method: str


def contact_id_of(request: web.Request) -> int | None:
    text = request.match_info["contact_id"]
    return int(text) if text.isdigit() and len(text) < 12 else None


async def load_contact(request: web.Request) -> Contact | web.Response:
    contact_id = contact_id_of(request)
    contact = None
    if contact_id is not None:
        contact = await request.app[SERVICES].contacts.get(contact_id)
    if contact is None or contact.id is None:
        return refusal(request, 404, "No such contact", "This contact does not exist (any more).")
    return contact


def customer_words(language: Language, locale: str | None) -> dict[str, str]:
    """Each category's name as the customer saw it: their locale's word ("promotions" for
    `marketing`), else the default locale's."""
    code = locale if locale is not None and locale in language.catalogs else None
    code = code or language.default_locale
    catalog = language.catalogs[code]
    names = {}
    for category in language.categories:
        text = catalog.categories.get(category.name)
        names[category.name] = category.display(code, text.display if text else None)
    return names


async def _categories(
    request: web.Request, contact_id: int, locale: str | None
) -> list[CategoryRow]:
    """Each category as the customer saw it named (their locale's word, e.g. "promotions" for
    `marketing`), with its current status."""
    services = request.app[SERVICES]
    names = customer_words(services.language, locale)
    views = await services.ledger.current(contact_id)
    rows = []
    for category in services.language.categories:
        view = views.get(category.name)
        rows.append(
            CategoryRow(
                name=category.name,
                display=names[category.name],
                kind=category.kind.value,
                status=(view.status if view else ConsentStatus.NONE).value,
                since=when(view.since) if view else "",
                source=view.source.value if view and view.source else "",
                method=view.method.value if view and view.method else "",
            )
        )
    return rows


def _filter_of(request: web.Request) -> TimelineFilter:
    return TimelineFilter.from_query(
        request.query.getall("kind", []),
        request.query.get("since", ""),
        request.query.get("until", ""),
    )


async def render_contact(
    request: web.Request,
    session: AgentSession,
    contact: Contact,
    *,
    revealed: bool = False,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    """The contact page (also the answer to a reveal, and to a refused action)."""
    services = request.app[SERVICES]
    assert contact.id is not None
    try:
        flt = _filter_of(request)
        filter_error = None
    except ValueError as exc:
        flt = TimelineFilter()
        filter_error = f"Filter ignored: {exc}"
    timeline = await build_timeline(session_factory(services.engine), contact.id, flt)
    now = datetime.now(UTC)
    window_open, window_text = window_state(await services.window.closes_at(contact.id), now)
    conversation = await services.ledger.conversation(contact.id)
    identities = await services.contacts.identities(contact.id)
    notice = NOTICES.get(request.query.get("done", ""))
    return render(
        request,
        "console/contact.html",
        {
            "section": "contacts",
            "contact": contact,
            "number": full_number(contact.wa_id) if revealed else mask_number(contact.wa_id),
            "revealed": revealed,
            "has_number": bool(contact.wa_id and contact.wa_id.isdigit()),
            "identities": [
                {
                    "kind": i.kind,
                    "value": i.value if i.kind != "wa_id" or revealed else mask_number(i.value),
                    "valid_from": when(i.valid_from),
                    "valid_to": when(i.valid_to) or "current",
                }
                for i in identities
            ],
            "created": when(contact.created_at),
            "window_open": window_open,
            "window_text": window_text,
            "state": conversation.state if conversation else "idle",
            "categories": await _categories(request, contact.id, contact.locale),
            "category_names": customer_words(services.language, contact.locale),
            "timeline": timeline,
            # Newest first, one card per decision.
            "cards": list(reversed(group_decisions(timeline.items))),
            "kinds": [k.value for k in Kind],
            "chosen_kinds": {k.value for k in flt.kinds},
            "since": flt.since.isoformat() if flt.since else "",
            "until": flt.until.isoformat() if flt.until else "",
            "query_string": request.query_string,
            "audit": await AuditLog(services.redis).for_contact(contact.id),
            "when": when,
            "action_id": uuid.uuid4().hex,
            "notice": notice,
            "error": error or filter_error,
        },
        session=session,
        status=status,
    )


@console_page
async def contact_page(request: web.Request, session: AgentSession) -> web.StreamResponse:
    contact = await load_contact(request)
    if isinstance(contact, web.Response):
        return contact
    return await render_contact(request, session, contact)


@console_page
async def reveal(request: web.Request, session: AgentSession) -> web.StreamResponse:
    """Show the full number for this one page view, and log who saw it."""
    contact = await load_contact(request)
    if isinstance(contact, web.Response):
        return contact
    await AuditLog(request.app[SERVICES].redis).record(
        agent=session.agent, action="reveal_number", contact_id=contact.id
    )
    return await render_contact(request, session, contact, revealed=True)


def _download(body: str, *, filename: str, content_type: str) -> web.Response:
    response = web.Response(text=body, content_type=content_type, charset="utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    secure(response)
    return response


async def _export(request: web.Request, session: AgentSession, what: str) -> web.StreamResponse:
    contact = await load_contact(request)
    if isinstance(contact, web.Response):
        return contact
    assert contact.id is not None
    services = request.app[SERVICES]
    await AuditLog(services.redis).record(
        agent=session.agent, action=f"download_{what}", contact_id=contact.id
    )
    stem = f"contact-{contact.id}"
    if what == "proof":
        document = await proof_document(services, contact, agent=session.agent)
        return _download(
            json.dumps(document, ensure_ascii=False, indent=2),
            filename=f"{stem}-consent-proof.json",
            content_type="application/json",
        )
    timeline = await build_timeline(
        session_factory(services.engine), contact.id, limit=EXPORT_LIMIT
    )
    if what == "transcript_json":
        return _download(
            json.dumps(transcript_json(contact, timeline), ensure_ascii=False, indent=2),
            filename=f"{stem}-transcript.json",
            content_type="application/json",
        )
    text = transcript_text(contact, timeline, business_name=services.settings.business_name)
    return _download(text, filename=f"{stem}-transcript.txt", content_type="text/plain")


@console_page
async def transcript_txt(request: web.Request, session: AgentSession) -> web.StreamResponse:
    return await _export(request, session, "transcript_text")


@console_page
async def transcript_json_download(
    request: web.Request, session: AgentSession
) -> web.StreamResponse:
    return await _export(request, session, "transcript_json")


@console_page
async def proof_download(request: web.Request, session: AgentSession) -> web.StreamResponse:
    return await _export(request, session, "proof")


def add_routes(app: web.Application) -> None:
    base = "/console/contacts/{contact_id}"
    app.router.add_get(base, contact_page)
    app.router.add_post(base + "/reveal", reveal)
    app.router.add_get(base + "/transcript.txt", transcript_txt)
    app.router.add_get(base + "/transcript.json", transcript_json_download)
    app.router.add_get(base + "/consent-proof.json", proof_download)

"""What an agent may do for a customer, and nothing more: withdraw a category the customer asked
(by phone, by email, at the counter) to stop, and send a double opt-in request again.

Both are recorded with the agent's name and a required note: the withdrawal as a ledger row
(source ``agent``, method ``agent_action``), the request as the evidence of the pending row the
flow writes, and both in the console's audit log. An agent can never grant consent: there is no
route for it, and the request only asks; the customer's own YES is what grants. Each form carries
a one-time action id, so a double click records one decision.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from bot.appkeys import SERVICES
from bot.console.audit import AuditLog
from bot.console.auth import console_page
from bot.console.contact_page import load_contact, render_contact
from bot.console.render import redirect, secure
from bot.console.sessions import AgentSession
from bot.db.ledger import ConsentChange
from bot.db.models import Contact
from flows import events as ev
from flows.consent import ConsentAction, Method, Source

MIN_NOTE: Final = 3
MAX_NOTE: Final = 1000
_ACTION_ID = re.compile(r"^[0-9a-f]{32}$")


class Refused(ValueError):
    """The form cannot be carried out; the message is shown to the agent."""


def _note(form: Mapping[str, object]) -> str:
    note = form.get("note")
    text = note.strip() if isinstance(note, str) else ""
    if not MIN_NOTE <= len(text) <= MAX_NOTE:
        raise Refused(
            f"A note of {MIN_NOTE} to {MAX_NOTE} characters is required: say who asked, how and "
            "why."
        )
    return text


def _action_id(form: Mapping[str, object]) -> str:
    value = form.get("action_id")
    if not isinstance(value, str) or not _ACTION_ID.match(value):
        raise Refused("This form is incomplete; reload the page and try again.")
    return value


def _categories(request: web.Request, chosen: list[str]) -> list[str]:
    known = [c.name for c in request.app[SERVICES].language.categories]
    if not chosen:
        raise Refused("Choose a category.")
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise Refused(f"Unknown category: {', '.join(unknown)}")
    return [c for c in known if c in chosen]


def _reachable(contact: Contact) -> bool:
    """The contact has a real identifier to write to (not only an erased one's pseudonyms)."""
    return any(
        value is not None and not value.startswith("erased:")
        for value in (contact.wa_id, contact.user_id)
    )


async def _carry_out(
    request: web.Request, session: AgentSession, action: str
) -> web.StreamResponse:
    contact = await load_contact(request)
    if isinstance(contact, web.Response):
        return contact
    form = await request.post()
    try:
        note = _note(form)
        action_id = _action_id(form)
        chosen = [v for v in form.getall("category", []) if isinstance(v, str)]
        categories = _categories(request, chosen)
        if action == "withdraw":
            await _withdraw(request, session, contact, categories, note, action_id)
        else:
            await _request_optin(request, session, contact, categories, note, action_id)
    except Refused as refused:
        return await render_contact(request, session, contact, error=str(refused), status=422)
    done = "withdrawn" if action == "withdraw" else "optin_requested"
    return secure(redirect(f"/console/contacts/{contact.id}?done={done}#actions"))


async def _withdraw(
    request: web.Request,
    session: AgentSession,
    contact: Contact,
    categories: list[str],
    note: str,
    action_id: str,
) -> None:
    services = request.app[SERVICES]
    assert contact.id is not None
    now = datetime.now(UTC)
    changes = [
        ConsentChange(
            category=category,
            action=ConsentAction.WITHDRAWN,
            source=Source.AGENT,
            method=Method.AGENT_ACTION,
            evidence={"agent": session.agent, "note": note, "via": "console"},
            business_name=services.settings.business_name,
            policy_version=services.settings.policy_version,
            occurred_at=now,
            event_key=f"console:{action_id}:{category}:withdrawn",
        )
        for category in categories
    ]
    written = await services.ledger.apply(contact.id, changes)
    await services.hooks.emit_consent(contact, written)
    await AuditLog(services.redis).record(
        agent=session.agent,
        action="withdraw",
        contact_id=contact.id,
        detail={"categories": ",".join(categories), "note": note, "rows": str(len(written))},
    )


async def _request_optin(
    request: web.Request,
    session: AgentSession,
    contact: Contact,
    categories: list[str],
    note: str,
    action_id: str,
) -> None:
    services = request.app[SERVICES]
    assert contact.id is not None
    if not _reachable(contact):
        raise Refused("This contact's identifiers were erased: there is no one to ask.")
    event = ev.ConsentRequest(
        event_id=f"console:{action_id}",
        phone_number_id=services.settings.phone_number_id,
        occurred_at=datetime.now(UTC),
        contact=ev.ContactRef(wa_id=contact.wa_id, user_id=contact.user_id),
        contact_id=contact.id,
        kind="optin",
        categories=tuple(categories),
        source=Source.AGENT.value,
        evidence_json=json.dumps({"agent": session.agent, "note": note, "via": "console"}),
        policy_version=services.settings.policy_version,
        locale=contact.locale,
    )
    await services.inbound_queue.accept([event])
    await AuditLog(services.redis).record(
        agent=session.agent,
        action="request_optin",
        contact_id=contact.id,
        detail={"categories": ",".join(categories), "note": note},
    )


@console_page
async def withdraw(request: web.Request, session: AgentSession) -> web.StreamResponse:
    return await _carry_out(request, session, "withdraw")


@console_page
async def request_optin(request: web.Request, session: AgentSession) -> web.StreamResponse:
    return await _carry_out(request, session, "request_optin")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/console/contacts/{contact_id}/withdraw", withdraw)
    app.router.add_post("/console/contacts/{contact_id}/request-optin", request_optin)

"""What the sandbox page shows, read from the same records the API and the console read.

Chat bubbles come from the transcript: the customer's messages as the worker recorded them and
the bot's as the Cloud API bodies it would have sent (`payload_json`), from which the reply
buttons, list rows and template quick replies are rebuilt, so the person trying the bot taps
exactly what a customer would, on any message, old ones included: each button carries its own
message's wamid as the tap's context. The side panel is the ledger's current state per category, the
conversation's state, the 24-hour window and the last ledger rows.
These are plain values; the templates render them (autoescaped).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select

from bot.db.engine import session_factory
from bot.db.models import TranscriptEntry
from bot.services import Services
from flows.consent import ConsentStatus

PAGE_ROWS = 60
LEDGER_ROWS = 8


@dataclass(frozen=True, slots=True)
class Choice:
    """Something the customer can tap: `kind` is the webhook it sends (`button_reply`,
    `list_reply`, or `button` for a template's quick reply)."""

    kind: str
    id: str
    title: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class TemplateView:
    name: str
    language: str
    parameters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Bubble:
    """One message of the chat. `answer_to` is what a tap on it names as its context."""

    id: int
    side: str  # customer | bot
    kind: str
    text: str
    time: str
    status: str
    note: str | None
    wamid: str | None
    answer_to: str
    tapped: bool = False
    buttons: tuple[Choice, ...] = ()
    list_button: str | None = None
    list_section: str | None = None
    rows: tuple[Choice, ...] = ()
    template: TemplateView | None = None
    quick_replies: tuple[Choice, ...] = ()


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M")


def quick_reply_label(payload: str) -> str:
    """A readable title for a template quick reply whose wording lives at Meta: "optin:yes"
    -> "Yes"."""
    word = payload.rpartition(":")[2].replace("_", " ").strip()
    return word[:1].upper() + word[1:] if word else payload


def _interactive(body: Mapping[str, Any]) -> dict[str, Any]:
    interactive = body.get("interactive")
    if not isinstance(interactive, dict):
        return {}
    action = interactive.get("action")
    if interactive.get("type") == "button" and isinstance(action, dict):
        return {
            "buttons": tuple(
                Choice("button_reply", str(b["reply"]["id"]), str(b["reply"]["title"]))
                for b in action.get("buttons", [])
                if isinstance(b, dict) and isinstance(b.get("reply"), dict)
            )
        }
    if interactive.get("type") == "list" and isinstance(action, dict):
        sections = [s for s in action.get("sections", []) if isinstance(s, dict)]
        first_title = sections[0].get("title") if sections else None
        return {
            "list_button": str(action.get("button", "Menu")),
            "list_section": str(first_title) if first_title else None,
            "rows": tuple(
                Choice("list_reply", str(r["id"]), str(r["title"]), str(r.get("description", "")))
                for section in sections
                for r in section.get("rows", [])
                if isinstance(r, dict)
            ),
        }
    return {}


def _template(body: Mapping[str, Any]) -> dict[str, Any]:
    template = body.get("template")
    if not isinstance(template, dict):
        return {}
    parameters: list[str] = []
    replies: list[Choice] = []
    for component in template.get("components", []):
        if not isinstance(component, dict):
            continue
        for parameter in component.get("parameters", []):
            if not isinstance(parameter, dict):
                continue
            if component.get("type") == "body" and parameter.get("type") == "text":
                parameters.append(str(parameter.get("text", "")))
            elif component.get("sub_type") == "quick_reply" and "payload" in parameter:
                payload = str(parameter["payload"])
                replies.append(Choice("button", payload, quick_reply_label(payload)))
    language = template.get("language")
    return {
        "template": TemplateView(
            name=str(template.get("name", "")),
            language=str(language.get("code", "")) if isinstance(language, dict) else "",
            parameters=tuple(parameters),
        ),
        "quick_replies": tuple(replies),
    }


def bubble_of(entry: TranscriptEntry) -> Bubble | None:
    """The bubble of a transcript row; None for rows that are not messages (statuses)."""
    if entry.id is None or entry.direction not in ("inbound", "outbound"):
        return None
    if entry.direction == "inbound":
        return Bubble(
            id=entry.id,
            side="customer",
            kind=entry.kind,
            text=entry.text or f"[{entry.kind}]",
            time=_clock(entry.occurred_at),
            status="received",
            note=None,
            wamid=entry.wamid,
            answer_to=entry.wamid or "",
            tapped=entry.kind in ("interactive", "button"),
        )
    try:
        body = json.loads(entry.payload_json or "{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    status = entry.status or ""
    note = None
    if status in ("refused", "failed"):
        note = f"Not sent: {entry.error_title or status}"
    extra = {**_interactive(body), **_template(body)}
    text = entry.text or ""
    if "template" in extra and text.startswith("[template "):
        text = ""  # the service's own label of a template whose wording lives at Meta
    return Bubble(
        id=entry.id,
        side="bot",
        kind=entry.kind,
        text=text,
        time=_clock(entry.occurred_at),
        status=status,
        note=note,
        wamid=entry.wamid,
        # The sandbox gives each message it keeps a wamid, as Meta does, and a tap names it, so
        # an old message's button is told apart from the open question's. A message kept
        # before it did has none: its context names our own id, which nothing is bound to, so
        # a tap on it counts as answering the open question.
        answer_to=entry.wamid or f"wamid.SANDBOX.{entry.message_id or entry.id}",
        **extra,
    )


def settled(rows: Sequence[TranscriptEntry]) -> list[TranscriptEntry]:
    """The rows up to (not including) the first outbound message still queued, so the page's
    cursor never passes a message whose fate is not known yet."""
    kept: list[TranscriptEntry] = []
    for row in rows:
        if row.direction == "outbound" and row.status == "queued":
            break
        kept.append(row)
    return kept


async def bubbles_after(services: Services, contact_id: int, after: int) -> list[Bubble]:
    """The contact's settled messages with a transcript id above `after`, oldest first."""
    statement = (
        select(TranscriptEntry)
        .where(
            col(TranscriptEntry.contact_id) == contact_id,
            col(TranscriptEntry.id) > after,
            col(TranscriptEntry.direction) != "status",
        )
        .order_by(col(TranscriptEntry.id))
        .limit(PAGE_ROWS)
    )
    async with session_factory(services.engine)() as session:
        rows = list((await session.exec(statement)).all())
    return [b for b in map(bubble_of, settled(rows)) if b is not None]


@dataclass(frozen=True, slots=True)
class ConsentLine:
    category: str
    display: str
    status: str
    since: str | None


@dataclass(frozen=True, slots=True)
class LedgerLine:
    time: str
    category: str
    action: str
    method: str


@dataclass(frozen=True, slots=True)
class Panel:
    """The side panel: where this customer's consent and conversation stand."""

    wa_id: str
    known: bool
    locale: str | None
    consents: tuple[ConsentLine, ...]
    state: str
    window_open: bool
    window_closes: str | None
    ledger: tuple[LedgerLine, ...]


async def read_panel(services: Services, wa_id: str, locale: str) -> Panel:
    categories = services.language.categories
    catalog = services.language.catalogs.get(locale)
    contact = await services.contacts.find(wa_id)

    def display(name: str) -> str:
        for category in categories:
            if category.name == name:
                return category.display(locale, catalog.category_name(name) if catalog else None)
        return name.replace("_", " ")

    if contact is None or contact.id is None:
        return Panel(
            wa_id=wa_id,
            known=False,
            locale=None,
            consents=tuple(
                ConsentLine(c.name, display(c.name), ConsentStatus.NONE.value, None)
                for c in categories
            ),
            state="idle",
            window_open=False,
            window_closes=None,
            ledger=(),
        )
    current = await services.ledger.current(contact.id)
    record = await services.ledger.conversation(contact.id)
    closes = await services.window.closes_at(contact.id)
    events = await services.ledger.events(contact.id)
    now = datetime.now(UTC)
    return Panel(
        wa_id=wa_id,
        known=True,
        locale=contact.locale,
        consents=tuple(
            ConsentLine(
                c.name,
                display(c.name),
                current[c.name].status.value if c.name in current else ConsentStatus.NONE.value,
                _clock(since) if c.name in current and (since := current[c.name].since) else None,
            )
            for c in categories
        ),
        state=record.state if record is not None else "idle",
        window_open=closes is not None and now < closes,
        window_closes=closes.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if closes else None,
        ledger=tuple(
            LedgerLine(_clock(e.occurred_at), display(e.category), e.action, e.method)
            for e in events[-LEDGER_ROWS:][::-1]
        ),
    )


async def latest_bubbles(services: Services, contact_id: int) -> list[Bubble]:
    """The contact's last `PAGE_ROWS` settled messages, oldest first (the page's first view)."""
    statement = (
        select(TranscriptEntry)
        .where(
            col(TranscriptEntry.contact_id) == contact_id,
            col(TranscriptEntry.direction) != "status",
        )
        .order_by(col(TranscriptEntry.id).desc())
        .limit(PAGE_ROWS)
    )
    async with session_factory(services.engine)() as session:
        rows = list((await session.exec(statement)).all())
    rows.reverse()
    return [b for b in map(bubble_of, settled(rows)) if b is not None]

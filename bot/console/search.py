"""Finding a contact by number, BSUID, username or name, fast on a large contact base.

Every kind of query is answered from an index: a number by the unique index on ``wa_id`` (exact
or prefix, as a range: ``346`` finds ``346 <= wa_id < 347``) and by the identity history (a former
number, exact); a BSUID by the unique index on ``user_id`` and the history; a name or username as
a case-insensitive prefix range over ``lower(...)``, which indexes on those expressions serve.
Results come newest contact first and page by id (keyset: "contacts older than id N"), so page
100 costs what page 1 does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from aiohttp import web
from sqlalchemy import ColumnElement, CompoundSelect, and_, func, union
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from bot.appkeys import SERVICES
from bot.console.auth import console_page
from bot.console.contact_page import customer_words
from bot.console.display import mask_number, when
from bot.console.render import render
from bot.console.sessions import AgentSession
from bot.db.consent_models import ConsentState
from bot.db.engine import session_factory
from bot.db.models import Contact, ContactIdentity
from bot.normaliser_clean import clean_text

PAGE_SIZE: Final = 25
MAX_QUERY: Final = 100

_NUMBER = re.compile(r"^\+?[\d\s().-]+$")
_BSUID = re.compile(r"^[A-Za-z]{2}\.[A-Za-z0-9]+$")


#: The contact list's consent filter: contacts with at least one category in that status.
CONSENT_FILTERS: Final = ("opted_out", "pending", "lapsed", "opted_in")


class QueryKind(StrEnum):
    ALL = "all"
    NUMBER = "number"
    BSUID = "bsuid"
    USERNAME = "username"
    NAME = "name"


@dataclass(frozen=True, slots=True)
class ContactQuery:
    kind: QueryKind
    value: str  # digits, a BSUID, or a lower-cased name prefix


def parse_query(text: str) -> ContactQuery:
    """What the agent typed: ``+34 612…`` a number, ``US.123…`` a BSUID, ``@ana`` a username,
    anything else a name or username prefix. NUL and lone surrogates are dropped first
    (`clean_text`): no stored name holds them, and PostgreSQL refuses them in a query."""
    text = clean_text(text).strip()[:MAX_QUERY]
    if not text:
        return ContactQuery(QueryKind.ALL, "")
    if _NUMBER.match(text) and any(ch.isdigit() for ch in text):
        return ContactQuery(QueryKind.NUMBER, re.sub(r"\D", "", text))
    if _BSUID.match(text):
        return ContactQuery(QueryKind.BSUID, text[:2].upper() + text[2:])
    if text.startswith("@") and len(text) > 1:
        return ContactQuery(QueryKind.USERNAME, text[1:].lower())
    return ContactQuery(QueryKind.NAME, text.lower())


def _digits_after(prefix: str) -> str | None:
    """The smallest digit string above every string starting with ``prefix`` (``349`` -> ``35``);
    None when there is none (``99``)."""
    stripped = prefix.rstrip("9")
    if not stripped:
        return None
    return stripped[:-1] + str(int(stripped[-1]) + 1)


def _text_after(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix``, in code point order."""
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    following = last + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are not text (nor storable): skip them
        following = 0xE000
    return prefix[:-1] + chr(following)


def _prefix_range(column: Any, prefix: str, after: str | None) -> ColumnElement[bool]:
    lower = column >= prefix
    return lower if after is None else and_(lower, column < after)


def _name_ids(dialect: str, query: ContactQuery) -> CompoundSelect[tuple[int]]:
    after = _text_after(query.value)

    def expression(column: Any) -> Any:
        lowered = func.lower(column)
        # Code point order, the order the index on the expression is built in (PostgreSQL
        # compares in the database's collation otherwise, where a prefix is not a range).
        return lowered.collate("C") if dialect == "postgresql" else lowered

    by_username = select(col(Contact.id)).where(
        _prefix_range(expression(Contact.username), query.value, after)
    )
    if query.kind is QueryKind.USERNAME:
        return union(by_username)
    by_name = select(col(Contact.id)).where(
        _prefix_range(expression(Contact.profile_name), query.value, after)
    )
    return union(by_username, by_name)


def _matching_ids(dialect: str, query: ContactQuery) -> CompoundSelect[tuple[int]]:
    if query.kind is QueryKind.NUMBER:
        current = select(col(Contact.id)).where(
            _prefix_range(col(Contact.wa_id), query.value, _digits_after(query.value))
        )
        former = select(col(ContactIdentity.contact_id)).where(
            col(ContactIdentity.kind) == "wa_id", col(ContactIdentity.value) == query.value
        )
        return union(current, former)
    if query.kind is QueryKind.BSUID:
        current = select(col(Contact.id)).where(col(Contact.user_id) == query.value)
        former = select(col(ContactIdentity.contact_id)).where(
            col(ContactIdentity.kind) == "user_id", col(ContactIdentity.value) == query.value
        )
        return union(current, former)
    return _name_ids(dialect, query)


def search_statement(
    query: ContactQuery,
    *,
    dialect: str,
    before: int | None = None,
    limit: int = PAGE_SIZE,
    consent: str | None = None,
) -> SelectOfScalar[Contact]:
    """Contacts matching ``query`` (and, with ``consent``, having a category in that status),
    newest first, older than id ``before``; ``limit`` rows."""
    statement = select(Contact)
    if query.kind is not QueryKind.ALL:
        statement = statement.where(col(Contact.id).in_(_matching_ids(dialect, query)))
    if consent is not None:
        statement = statement.where(
            col(Contact.id).in_(
                select(col(ConsentState.contact_id)).where(col(ConsentState.status) == consent)
            )
        )
    if before is not None:
        statement = statement.where(col(Contact.id) < before)
    return statement.order_by(col(Contact.id).desc()).limit(limit)


@dataclass(frozen=True, slots=True)
class SearchPage:
    contacts: list[Contact]
    next_before: int | None  # the `before` of the next page, None on the last one
    #: Each listed contact's status per category (categories never decided are absent).
    states: dict[int, dict[str, str]] = field(default_factory=dict)


async def search_contacts(
    sessions: async_sessionmaker[AsyncSession],
    query: ContactQuery,
    *,
    before: int | None = None,
    page_size: int = PAGE_SIZE,
    consent: str | None = None,
) -> SearchPage:
    async with sessions() as session:
        dialect = session.bind.dialect.name if session.bind is not None else ""
        statement = search_statement(
            query, dialect=dialect, before=before, limit=page_size + 1, consent=consent
        )
        rows = list((await session.exec(statement)).all())
        more = len(rows) > page_size
        rows = rows[:page_size]
        ids = [c.id for c in rows if c.id is not None]
        states: dict[int, dict[str, str]] = {}
        if ids:
            found = await session.exec(
                select(ConsentState).where(col(ConsentState.contact_id).in_(ids))
            )
            for state in found.all():
                states.setdefault(state.contact_id, {})[state.category] = state.status
    next_before = rows[-1].id if more and rows else None
    return SearchPage(rows, next_before, states)


@dataclass(frozen=True, slots=True)
class ContactRow:
    """One search result as the page shows it (the number masked)."""

    id: int
    number: str
    user_id: str
    username: str
    name: str
    locale: str
    updated: str
    #: (status, category names) groups, e.g. [("opted_out", ["promotions"]), …]
    consent: list[tuple[str, list[str]]]


#: The order statuses are listed in a row: what an agent must notice first.
_STATUS_ORDER: Final = ("opted_out", "pending", "lapsed", "opted_in", "none")


def consent_summary(states: dict[str, str], names: dict[str, str]) -> list[tuple[str, list[str]]]:
    """Group a contact's categories by status, in the customer's words: one entry per status."""
    groups: dict[str, list[str]] = {}
    for category, name in names.items():
        groups.setdefault(states.get(category, "none"), []).append(name)
    return [(status, groups[status]) for status in _STATUS_ORDER if status in groups]


def _row(contact: Contact, states: dict[str, str], names: dict[str, str]) -> ContactRow:
    assert contact.id is not None
    return ContactRow(
        id=contact.id,
        number=mask_number(contact.wa_id),
        user_id=contact.user_id or "",
        username=contact.username or "",
        name=contact.profile_name or "",
        locale=contact.locale or "",
        updated=when(contact.updated_at),
        consent=consent_summary(states, names),
    )


@console_page
async def search_page(request: web.Request, session: AgentSession) -> web.StreamResponse:
    text = request.query.get("q", "")
    before_text = request.query.get("before", "")
    before = int(before_text) if before_text.isdigit() else None
    query = parse_query(text)
    consent_text = request.query.get("consent", "")
    consent = consent_text if consent_text in CONSENT_FILTERS else None
    services = request.app[SERVICES]
    sessions = session_factory(services.engine)
    page = await search_contacts(sessions, query, before=before, consent=consent)
    return render(
        request,
        "console/search.html",
        {
            "section": "contacts",
            "q": text.strip()[:MAX_QUERY],
            "query_kind": query.kind.value,
            "rows": [
                _row(
                    c,
                    page.states.get(c.id or 0, {}),
                    customer_words(services.language, c.locale),
                )
                for c in page.contacts
            ],
            "consent": consent or "",
            "consent_filters": CONSENT_FILTERS,
            "next_before": page.next_before,
            "paged": before is not None,
        },
        session=session,
    )

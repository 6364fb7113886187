"""The opt-outs page (`/console/opt-outs`): who opted out and in, when, how and of what, across
contacts.

A compliance officer asks "how many people stopped promotions last week, and how?"; a support
lead asks "are the clarifying questions working, or do people go silent?". This page answers
both from the ledger: opt-outs (`withdrawn`) and opt-ins (`granted`, `reconfirmed`) per day, and
by category, source and method (keyword, button, Meta signal, agent, clarifying question,
silence …), as charts drawn on the server with their numbers beside them, the latest decisions
with links to each contact, and the same rows as a CSV download.

Counting is one aggregate query over the ledger (grouped by day, action, category, source and
method), so the page costs the same for ten customers or ten million; the list and the CSV read
rows newest first with a cap.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from aiohttp import web
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from bot.appkeys import SERVICES
from bot.console.audit import AuditLog
from bot.console.auth import console_page
from bot.console.charts import Bars, bar_chart
from bot.console.contact_page import customer_words
from bot.console.display import mask_number, when
from bot.console.labels import load_labels, word
from bot.console.render import render
from bot.console.sessions import AgentSession
from bot.csvsafe import formula_safe
from bot.db.consent_models import ConsentEvent
from bot.db.engine import session_factory
from bot.db.models import Contact

OPT_OUT: Final = ("withdrawn",)
OPT_IN: Final = ("granted", "reconfirmed")
DEFAULT_DAYS: Final = 30
MAX_DAYS: Final = 366
LIST_LIMIT: Final = 200
CSV_LIMIT: Final = 100_000
CSV_COLUMNS: Final = (
    "occurred_at",
    "contact_id",
    "contact_page",
    "category",
    "decision",
    "action",
    "source",
    "method",
    "method_group",
    "ledger_id",
)
OPT_OUT_COLOUR: Final = "#cf222e"
OPT_IN_COLOUR: Final = "#0a7d5a"

#: How a decision was taken, in the groups the page counts by (the ledger's method codes).
METHOD_GROUPS: Final = {
    "keyword": "keyword",
    "button": "button",
    "preferences_menu": "button",
    "campaign_reply": "button",
    "meta_user_preferences": "Meta signal",
    "meta_template_button": "Meta signal",
    "meta_send_error": "Meta signal",
    "agent_action": "agent",
    "clarification": "clarifying question",
    "clarification_timeout": "silence",
    "campaign_deadline": "silence",
    "optin_expiry": "silence",
    "double_opt_in": "double opt-in",
    "api_record": "recorded by the business",
}


def method_group(method: str) -> str:
    return METHOD_GROUPS.get(method, "other")


@dataclass(frozen=True, slots=True)
class Range:
    since: date
    until: date  # included

    @classmethod
    def from_query(cls, query: Any, today: date) -> tuple[Range, str | None]:
        """The dates asked for (default: the last 30 days); a bad value is ignored, saying so."""
        default = cls(today - timedelta(days=DEFAULT_DAYS - 1), today)
        try:
            since = date.fromisoformat(query.get("since") or default.since.isoformat())
            until = date.fromisoformat(query.get("until") or default.until.isoformat())
        except ValueError:
            return default, "Dates ignored: use YYYY-MM-DD."
        if until < since:
            return default, "Dates ignored: the end is before the start."
        if (until - since).days >= MAX_DAYS:
            return cls(until - timedelta(days=MAX_DAYS - 1), until), "At most a year is shown."
        return cls(since, until), None

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time(), UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.until, time(), UTC) + timedelta(days=1)

    def days(self) -> list[date]:
        return [self.since + timedelta(days=n) for n in range((self.until - self.since).days + 1)]


def _conditions(span: Range, category: str | None) -> list[Any]:
    conditions = [
        col(ConsentEvent.occurred_at) >= span.start,
        col(ConsentEvent.occurred_at) < span.end,
        col(ConsentEvent.action).in_((*OPT_OUT, *OPT_IN)),
    ]
    if category:
        conditions.append(col(ConsentEvent.category) == category)
    return conditions


@dataclass(frozen=True, slots=True)
class Counts:
    """Opt-outs and opt-ins per day and by category, source and method group."""

    by_day: dict[date, Counter[str]]
    by_category: dict[str, Counter[str]]
    by_source: dict[str, Counter[str]]
    by_method: dict[str, Counter[str]]

    @property
    def total(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.by_day.values():
            total.update(counts)
        return total


def _direction(action: str) -> str:
    return "out" if action in OPT_OUT else "in"


async def count_decisions(request: web.Request, span: Range, category: str | None) -> Counts:
    day = func.date(col(ConsentEvent.occurred_at))
    # SQLAlchemy's own select: sqlmodel's is typed for at most four columns.
    statement = (
        sa_select(
            day,
            col(ConsentEvent.action),
            col(ConsentEvent.category),
            col(ConsentEvent.source),
            col(ConsentEvent.method),
            func.count(),
        )
        .where(*_conditions(span, category))
        .group_by(
            day,
            col(ConsentEvent.action),
            col(ConsentEvent.category),
            col(ConsentEvent.source),
            col(ConsentEvent.method),
        )
    )
    counts = Counts({d: Counter() for d in span.days()}, {}, {}, {})
    async with session_factory(request.app[SERVICES].engine)() as session:
        rows = (await session.exec(statement)).all()  # type: ignore[call-overload]
    for when_day, action, category_name, source, method, n in rows:
        moment = when_day if isinstance(when_day, date) else date.fromisoformat(str(when_day))
        direction = _direction(action)
        counts.by_day.setdefault(moment, Counter())[direction] += n
        counts.by_category.setdefault(category_name, Counter())[direction] += n
        counts.by_source.setdefault(source, Counter())[direction] += n
        counts.by_method.setdefault(method_group(method), Counter())[direction] += n
    return counts


async def latest_decisions(
    request: web.Request, span: Range, category: str | None, limit: int
) -> list[tuple[ConsentEvent, Contact | None]]:
    statement = (
        select(ConsentEvent, Contact)
        .join(Contact, col(Contact.id) == col(ConsentEvent.contact_id), isouter=True)
        .where(*_conditions(span, category))
        .order_by(col(ConsentEvent.occurred_at).desc(), col(ConsentEvent.id).desc())
        .limit(limit)
    )
    async with session_factory(request.app[SERVICES].engine)() as session:
        return [(event, contact) for event, contact in (await session.exec(statement)).all()]


def _chart(
    title: str, groups: dict[str, Counter[str]], shown: dict[str, str], order: list[str]
) -> Any:
    labels = [shown.get(key, key) for key in order]
    return bar_chart(
        title,
        labels,
        [
            Bars("opt-outs", [groups[k]["out"] for k in order], OPT_OUT_COLOUR),
            Bars("opt-ins", [groups[k]["in"] for k in order], OPT_IN_COLOUR),
        ],
    )


def _table(groups: dict[str, Counter[str]], shown: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"code": key, "name": shown.get(key, key), "out": c["out"], "in": c["in"]}
        for key, c in sorted(groups.items(), key=lambda item: (-item[1]["out"], item[0]))
    ]


@console_page
async def optouts_page(request: web.Request, session: AgentSession) -> web.StreamResponse:
    services = request.app[SERVICES]
    span, error = Range.from_query(request.query, datetime.now(UTC).date())
    names = customer_words(services.language, None)
    category = request.query.get("category") or None
    if category is not None and category not in names:
        category, error = None, f"Unknown category ignored: {category}"
    counts = await count_decisions(request, span, category)
    labels = load_labels(services.settings.default_locale)
    sources = {code: word(labels, "sources", code) for code in counts.by_source}
    days = span.days()
    day_labels = [d.strftime("%d %b") for d in days]
    decisions = await latest_decisions(request, span, category, LIST_LIMIT)
    return render(
        request,
        "console/optouts.html",
        {
            "section": "opt-outs",
            "since": span.since.isoformat(),
            "until": span.until.isoformat(),
            "category": category or "",
            "category_names": names,
            "total": counts.total,
            "per_day": bar_chart(
                "Opt-outs and opt-ins per day",
                day_labels,
                [
                    Bars("opt-outs", [counts.by_day[d]["out"] for d in days], OPT_OUT_COLOUR),
                    Bars("opt-ins", [counts.by_day[d]["in"] for d in days], OPT_IN_COLOUR),
                ],
            ),
            "days": [
                {"day": d.isoformat(), "out": counts.by_day[d]["out"], "in": counts.by_day[d]["in"]}
                for d in reversed(days)
                if counts.by_day[d]
            ],
            "by_category": _chart(
                "By category", counts.by_category, names, sorted(counts.by_category)
            ),
            "category_rows": _table(counts.by_category, names),
            "by_source": _chart("By source", counts.by_source, sources, sorted(counts.by_source)),
            "source_rows": _table(counts.by_source, sources),
            "by_method": _chart("By method", counts.by_method, {}, sorted(counts.by_method)),
            "method_rows": _table(counts.by_method, {}),
            "decisions": [
                {
                    "at": when(event.occurred_at),
                    "contact_id": event.contact_id,
                    "contact": (
                        (contact.profile_name or contact.username or mask_number(contact.wa_id))
                        if contact is not None
                        else f"Contact {event.contact_id}"
                    ),
                    "action": event.action,
                    "category": event.category,
                    "category_name": names.get(event.category, event.category),
                    "source": event.source,
                    "method": event.method,
                    "group": method_group(event.method),
                }
                for event, contact in decisions
            ],
            "list_limit": LIST_LIMIT,
            "error": error,
        },
        session=session,
    )


@console_page
async def optouts_csv(request: web.Request, session: AgentSession) -> web.StreamResponse:
    """Every opt-out and opt-in of the range as CSV (cells a spreadsheet could run are
    quoted), newest first; the download is logged like the contact downloads."""
    services = request.app[SERVICES]
    span, _ = Range.from_query(request.query, datetime.now(UTC).date())
    category = request.query.get("category") or None
    rows = await latest_decisions(request, span, category, CSV_LIMIT)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for event, _contact in rows:
        writer.writerow(
            formula_safe(cell)
            for cell in (
                event.occurred_at.isoformat(),
                event.contact_id,
                f"/console/contacts/{event.contact_id}",
                event.category,
                "opt-out" if event.action in OPT_OUT else "opt-in",
                event.action,
                event.source,
                event.method,
                method_group(event.method),
                event.id,
            )
        )
    await AuditLog(services.redis).record(
        agent=session.agent,
        action="download_optouts",
        detail={"since": span.since.isoformat(), "until": span.until.isoformat()},
    )
    filename = f"opt-outs-{span.since.isoformat()}-{span.until.isoformat()}.csv"
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/opt-outs", optouts_page)
    app.router.add_get("/console/opt-outs.csv", optouts_csv)

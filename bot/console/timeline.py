"""One contact's history as one timeline: what they wrote, what we sent and what became of it,
how the conversation moved, and every consent decision with its evidence.

The pieces live in different places (transcript rows, flow-step rows, ledger rows, delivery
statuses keyed by Meta's wamid); this module reads them for one contact and one time range, folds
each delivery status into the message it is about (ticks: sent, delivered, read, or failed with
Meta's reason) and orders everything by when it happened. At one instant a customer's message
comes first, then the step it caused, the consent it recorded and our reply.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.console.display import when
from bot.db.consent_models import ConsentEvent
from bot.db.models import TranscriptEntry

#: Items a page shows at most (the newest); narrower dates show older ones.
PAGE_LIMIT: Final = 500
#: Items a download holds at most.
EXPORT_LIMIT: Final = 100_000


class Kind(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    FLOW = "flow"
    CONSENT = "consent"


ALL_KINDS: Final = frozenset(Kind)
_RANK: Final = {Kind.INBOUND: 0, Kind.FLOW: 1, Kind.CONSENT: 2, Kind.OUTBOUND: 3}
_DIRECTIONS: Final = {
    Kind.INBOUND: ("inbound",),
    Kind.OUTBOUND: ("outbound", "status"),
    Kind.FLOW: ("flow",),
}


@dataclass(frozen=True, slots=True)
class Tick:
    """One delivery status of an outbound message."""

    status: str
    at: datetime | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TimelineItem:
    kind: Kind
    at: datetime
    title: str
    text: str | None
    details: tuple[tuple[str, str], ...] = ()
    ticks: tuple[Tick, ...] = ()
    status: str | None = None
    error: str | None = None
    summary: str | None = None
    order: int = 0
    #: Consent cards: the decision, what it covered and how it was taken (codes; the page shows
    #: them in plain words).
    action: str | None = None
    agent: str | None = None  # "agent alice: “note”" when an agent decided
    categories: tuple[str, ...] = ()
    source: str | None = None
    method: str | None = None
    #: Flow steps: the flow's name and the states it moved between (codes).
    flow: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    #: An inbound card's own flow step, folded in (see `group_decisions`).
    step: TimelineItem | None = None
    #: Flow steps and consent cards: why an unclear wish to stop was asked about, in plain
    #: words (the `stop_intent` evidence: "typo of STOP (en)").
    why: str | None = None

    @property
    def sort_key(self) -> tuple[datetime, int, int]:
        return (self.at, _RANK[self.kind], self.order)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "at": self.at.isoformat(),
            "title": self.title,
            "text": self.text,
            "status": self.status,
            "error": self.error,
            "summary": self.summary,
            "ticks": [
                {"status": t.status, "at": t.at.isoformat() if t.at else None, "error": t.error}
                for t in self.ticks
            ],
            "details": dict(self.details),
        }

    def as_text(self) -> str:
        lines = [f"{when(self.at)}  {self.title}"]
        if self.summary:
            lines.append(f"    {self.summary}")
        if self.text:
            lines.extend(f"    {line}" for line in self.text.splitlines() or [""])
        if self.ticks:
            lines.append("    " + ", ".join(_tick_text(t) for t in self.ticks))
        elif self.status:
            lines.append(f"    status: {self.status}" + (f" ({self.error})" if self.error else ""))
        lines.extend(f"    {name}: {value}" for name, value in self.details)
        return "\n".join(lines)


def _tick_text(tick: Tick) -> str:
    text = f"{tick.status} {when(tick.at)}".strip()
    return f"{text} ({tick.error})" if tick.error else text


@dataclass(frozen=True, slots=True)
class TimelineFilter:
    """Which kinds, and which days (UTC, both ends included)."""

    kinds: frozenset[Kind] = ALL_KINDS
    since: date | None = None
    until: date | None = None

    @classmethod
    def from_query(cls, kinds: Sequence[str], since: str, until: str) -> TimelineFilter:
        """From the page's query string; raises ``ValueError`` naming a bad value."""
        unknown = sorted(set(kinds) - {kind.value for kind in Kind})
        if unknown:
            raise ValueError(f"unknown kind {', '.join(unknown)}")
        chosen = frozenset(Kind(k) for k in kinds)
        start = date.fromisoformat(since) if since else None
        end = date.fromisoformat(until) if until else None
        if start and end and end < start:
            raise ValueError("the end date is before the start date")
        return cls(chosen or ALL_KINDS, start, end)

    @property
    def start(self) -> datetime | None:
        return datetime.combine(self.since, time(), UTC) if self.since else None

    @property
    def end(self) -> datetime | None:
        return datetime.combine(self.until, time(), UTC) + timedelta(days=1) if self.until else None


@dataclass(frozen=True, slots=True)
class Timeline:
    items: list[TimelineItem]
    truncated: bool  # older items exist in the range but were left out
    counts: Mapping[Kind, int] = field(default_factory=dict)


def _error(code: int | None, title: str | None) -> str | None:
    if code is None and not title:
        return None
    return f"{code}: {title}" if code is not None else str(title)


def _inbound(row: TranscriptEntry) -> TimelineItem:
    return TimelineItem(
        kind=Kind.INBOUND,
        at=row.occurred_at,
        title=f"Customer wrote ({row.kind})",
        text=row.text if row.text is not None else f"[{row.kind}]",
        details=(("wamid", row.wamid),) if row.wamid else (),
        order=row.id or 0,
    )


def _outbound(row: TranscriptEntry, statuses: Sequence[TranscriptEntry]) -> TimelineItem:
    ticks = tuple(
        Tick(s.status or "", s.occurred_at, _error(s.error_code, s.error_title))
        for s in sorted(statuses, key=lambda s: (s.occurred_at, s.id or 0))
    )
    details = [("message id", row.message_id or "")]
    if row.wamid:
        details.append(("wamid", row.wamid))
    return TimelineItem(
        kind=Kind.OUTBOUND,
        at=row.occurred_at,
        title=f"We sent ({row.kind})",
        text=row.text,
        details=tuple(details),
        ticks=ticks,
        status=row.status,
        error=_error(row.error_code, row.error_title),
        order=row.id or 0,
    )


def _orphan_status(row: TranscriptEntry) -> TimelineItem:
    """A delivery status of a message not in view (sent before the range, or not by us)."""
    return TimelineItem(
        kind=Kind.OUTBOUND,
        at=row.occurred_at,
        title=f"Delivery status: {row.status}",
        text=None,
        details=(("wamid", row.wamid or ""),),
        status=row.status,
        error=_error(row.error_code, row.error_title),
        order=row.id or 0,
    )


#: The flow a step belongs to, named by the state that waits for the customer's answer.
FLOW_NAMES: Final = {
    "awaiting_optin": "Double opt-in",
    "awaiting_clarification": "Clarification",
    "awaiting_reconsent": "Re-consent",
}


def flow_name(source: str, target: str) -> str:
    """``Double opt-in`` for a step into or out of ``awaiting_optin``…; ``One step`` when the
    conversation stays idle (STOP, HELP, a category's START...)."""
    return FLOW_NAMES.get(target) or FLOW_NAMES.get(source) or "One step"


def _flow(row: TranscriptEntry) -> TimelineItem:
    try:
        step = json.loads(row.payload_json or "{}")
    except ValueError:
        step = {}
    source, target = str(step.get("from", "?")), str(step.get("to", "?"))
    label = str(step.get("label") or step.get("trigger") or "")
    why = str(step["why"]) if step.get("why") else None
    return TimelineItem(
        kind=Kind.FLOW,
        at=row.occurred_at,
        title=f"{flow_name(source, target)}: {source} → {target}"
        + (f" ({label})" if label else ""),
        text=None,
        summary=f"on {step.get('trigger', '?')}",
        flow=flow_name(source, target),
        from_state=source,
        to_state=target,
        details=(
            ("from state", source),
            ("to state", target),
            ("trigger", str(step.get("trigger", ""))),
            ("event", str(step.get("event_id", ""))),
            *((("why the bot asked", why),) if why else ()),
        ),
        order=row.id or 0,
        why=why,
    )


def _evidence(row: ConsentEvent) -> list[tuple[str, str]]:
    text = row.evidence_json
    if not text:
        return [("evidence", "erased")]
    try:
        evidence = json.loads(text)
    except ValueError:
        return [("evidence", text)]
    if not isinstance(evidence, dict):
        return [("evidence", text)]
    return [
        (f"evidence: {k}", v if isinstance(v, str) else json.dumps(v))
        for k, v in sorted(evidence.items())
    ]


def _agent_part(row: ConsentEvent) -> str | None:
    """``agent alice: “note”`` when an agent took the decision."""
    try:
        evidence = json.loads(row.evidence_json or "{}")
    except ValueError:
        evidence = {}
    if not isinstance(evidence, dict) or not evidence.get("agent"):
        return None
    part = f"agent {evidence['agent']}"
    if evidence.get("note"):
        part += f": “{evidence['note']}”"
    return part


def _consent_summary(row: ConsentEvent) -> str:
    """How the decision was taken, in one line: ``keyword via whatsapp_thread``, and who acted
    when an agent did."""
    summary = f"{row.method} via {row.source}"
    agent = _agent_part(row)
    return f"{summary}; {agent}" if agent else summary


def _why(row: ConsentEvent) -> str | None:
    """The reason the customer was asked whether they wanted to stop, when this decision
    answers that question."""
    try:
        evidence = json.loads(row.evidence_json or "{}")
    except ValueError:
        return None
    why = evidence.get("stop_intent") if isinstance(evidence, dict) else None
    return why if isinstance(why, str) and why else None


def consent_item(row: ConsentEvent) -> TimelineItem:
    details = [
        ("source", row.source),
        ("method", row.method),
        *_evidence(row),
        ("business", row.business_name),
        ("policy version", row.policy_version or ""),
        ("recorded", when(row.recorded_at)),
        ("ledger row", f"chain {row.chain}, #{row.seq}, hash {row.hash[:16]}…"),
    ]
    why = _why(row)
    summary = _consent_summary(row)
    return TimelineItem(
        kind=Kind.CONSENT,
        at=row.occurred_at,
        title=f"Consent {row.action}: {row.category}",
        text=None,
        details=tuple(details),
        summary=f"{summary}; asked because: {why}" if why else summary,
        order=row.id or 0,
        action=row.action,
        agent=_agent_part(row),
        categories=(row.category,),
        source=row.source,
        method=row.method,
        why=why,
    )


def group_decisions(items: Sequence[TimelineItem]) -> list[TimelineItem]:
    """One card per event: ledger rows of one moment with the same action, source and method
    (a START asking for four categories, a STOP ending them all) become one card naming every
    category, instead of one card each, and the conversation step a customer's message caused
    is shown inside that message's card. Evidence shown is the first row's: the rows of one
    decision carry the same. Order is kept (oldest first); only neighbours merge."""
    grouped: list[TimelineItem] = []
    for item in items:
        last = grouped[-1] if grouped else None
        if (
            last is not None
            and item.kind is Kind.FLOW
            and last.kind is Kind.INBOUND
            and last.step is None
            and last.at == item.at
        ):
            grouped[-1] = replace(last, step=item)
            continue
        if (
            last is not None
            and item.kind is Kind.CONSENT
            and last.kind is Kind.CONSENT
            and (last.at, last.action, last.source, last.method)
            == (item.at, item.action, item.source, item.method)
        ):
            categories = (*last.categories, *item.categories)
            grouped[-1] = replace(
                last,
                categories=categories,
                title=f"Consent {last.action}: {', '.join(categories)}",
            )
            continue
        grouped.append(item)
    return grouped


def _in_range(column: Any, flt: TimelineFilter) -> list[Any]:
    conditions = []
    if flt.start is not None:
        conditions.append(column >= flt.start)
    if flt.end is not None:
        conditions.append(column < flt.end)
    return conditions


async def _transcript_rows(
    session: AsyncSession, contact_id: int, flt: TimelineFilter, limit: int
) -> list[TranscriptEntry]:
    directions = [d for kind in flt.kinds for d in _DIRECTIONS.get(kind, ())]
    if not directions:
        return []
    statement = (
        select(TranscriptEntry)
        .where(
            col(TranscriptEntry.contact_id) == contact_id,
            col(TranscriptEntry.direction).in_(directions),
            *_in_range(col(TranscriptEntry.occurred_at), flt),
        )
        .order_by(col(TranscriptEntry.occurred_at).desc(), col(TranscriptEntry.id).desc())
        .limit(limit)
    )
    return list((await session.exec(statement)).all())


async def _statuses_of(session: AsyncSession, wamids: Iterable[str]) -> list[TranscriptEntry]:
    wanted = sorted(set(wamids))
    if not wanted:
        return []
    statement = select(TranscriptEntry).where(
        col(TranscriptEntry.direction) == "status", col(TranscriptEntry.wamid).in_(wanted)
    )
    return list((await session.exec(statement)).all())


async def _ledger_rows(
    session: AsyncSession, contact_id: int, flt: TimelineFilter, limit: int
) -> list[ConsentEvent]:
    if Kind.CONSENT not in flt.kinds:
        return []
    statement = (
        select(ConsentEvent)
        .where(
            col(ConsentEvent.contact_id) == contact_id,
            *_in_range(col(ConsentEvent.occurred_at), flt),
        )
        .order_by(col(ConsentEvent.occurred_at).desc(), col(ConsentEvent.id).desc())
        .limit(limit)
    )
    return list((await session.exec(statement)).all())


async def build_timeline(
    sessions: async_sessionmaker[AsyncSession],
    contact_id: int,
    flt: TimelineFilter | None = None,
    *,
    limit: int = PAGE_LIMIT,
) -> Timeline:
    """The newest ``limit`` items of the contact's history that ``flt`` lets through, oldest
    first."""
    flt = flt or TimelineFilter()
    async with sessions() as session:
        rows = await _transcript_rows(session, contact_id, flt, limit + 1)
        outbound = [r for r in rows if r.direction == "outbound"]
        statuses = await _statuses_of(session, (r.wamid for r in outbound if r.wamid))
        ledger = await _ledger_rows(session, contact_id, flt, limit + 1)
    by_wamid: dict[str, list[TranscriptEntry]] = {}
    for status in statuses:
        by_wamid.setdefault(status.wamid or "", []).append(status)
    shown = {r.wamid for r in outbound if r.wamid}
    items: list[TimelineItem] = []
    for row in rows:
        if row.direction == "inbound":
            items.append(_inbound(row))
        elif row.direction == "outbound":
            items.append(_outbound(row, by_wamid.get(row.wamid or "", [])))
        elif row.direction == "status" and row.wamid not in shown:
            items.append(_orphan_status(row))
        elif row.direction == "flow":
            items.append(_flow(row))
    items.extend(consent_item(row) for row in ledger)
    items.sort(key=lambda item: item.sort_key)
    truncated = len(rows) > limit or len(ledger) > limit or len(items) > limit
    items = items[-limit:]
    counts = {kind: sum(1 for i in items if i.kind is kind) for kind in Kind}
    return Timeline(items, truncated, counts)

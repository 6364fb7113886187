"""The conversation transcript: what each contact sent, what we sent, and what became of it.

Meta redelivers webhooks and status callbacks race the sender, so every write here is idempotent
and order-tolerant: inserts use ``INSERT … ON CONFLICT DO NOTHING`` against the unique indexes
of ``TranscriptEntry`` (a redelivery has no second effect, without the cost of a failed
transaction), and an outbound message's status only ever moves forward (a late "delivered" does
not undo "read"; "failed" is final).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Integer, String, bindparam, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.models import OUTBOUND_STATUS_RANK, TranscriptEntry, utcnow


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value.isoformat()}")


def flow_step_id(event_id: str) -> str:
    """The ``message_id`` of the flow step an event caused: short enough for the column
    whatever the event id's length, and never equal to one of our outbound message ids."""
    return "flow:" + hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:40]


def _lower_statuses(status: str) -> list[str]:
    """Statuses an outbound row may move forward from to reach ``status``."""
    rank = OUTBOUND_STATUS_RANK.get(status)
    if rank is None:
        return []
    return [name for name, other in OUTBOUND_STATUS_RANK.items() if other < rank]


def _insert_ignoring_duplicates(
    session: AsyncSession, values: Mapping[str, Any] | None = None
) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING; without `values`, for many rows (executemany)."""
    dialect = session.bind.dialect.name if session.bind is not None else ""
    table = TranscriptEntry.__table__  # type: ignore[attr-defined]
    statement: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        statement = postgresql.insert(table)
    elif dialect == "sqlite":
        statement = sqlite.insert(table)
    else:
        raise ValueError(f"unsupported database dialect {dialect!r}")
    if values is not None:
        statement = statement.values(**values)
    return statement.on_conflict_do_nothing()


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    """One outbound message to record, for `TranscriptRepository.record_outbound_many`."""

    contact_id: int
    message_id: str
    kind: str
    text: str | None
    payload_json: str | None


@dataclass(frozen=True, slots=True)
class OutboundMark:
    """What became of one outbound message, for `TranscriptRepository.mark_outbound_many`."""

    message_id: str
    status: str
    wamid: str | None = None
    error_code: int | None = None
    error_title: str | None = None


class TranscriptRepository:
    """Reads and idempotent writes of ``TranscriptEntry`` rows through ``session_factory``."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = session_factory

    async def _insert(self, session: AsyncSession, **values: Any) -> bool:
        values.setdefault("recorded_at", utcnow())
        result = await session.exec(_insert_ignoring_duplicates(session, values))
        return result.rowcount == 1

    async def record_inbound(
        self,
        contact_id: int,
        *,
        wamid: str | None,
        kind: str,
        text: str | None,
        payload_json: str | None,
        occurred_at: datetime,
    ) -> bool:
        """Record a message from the contact; False when this wamid was already recorded.

        Items without a wamid (e.g. a preferences update) are recorded each time: their
        redelivery is caught upstream by the event id.
        """
        _require_aware("occurred_at", occurred_at)
        async with self._sessions() as session:
            inserted = await self._insert(
                session,
                contact_id=contact_id,
                direction="inbound",
                kind=kind,
                wamid=wamid,
                text=text,
                payload_json=payload_json,
                occurred_at=occurred_at,
            )
            await session.commit()
        return inserted

    async def record_outbound(
        self,
        contact_id: int,
        *,
        message_id: str,
        kind: str,
        text: str | None,
        payload_json: str | None,
        status: str,
        occurred_at: datetime,
        error_title: str | None = None,
    ) -> bool:
        """Record a message we send (our ``message_id``); False when already recorded.

        ``error_title`` says why, when the message is recorded in a final status at once
        (``refused`` by the consent gate): a final status never moves again, so it cannot be
        added later by ``mark_outbound``.
        """
        _require_aware("occurred_at", occurred_at)
        async with self._sessions() as session:
            inserted = await self._insert(
                session,
                contact_id=contact_id,
                direction="outbound",
                kind=kind,
                message_id=message_id,
                status=status,
                text=text,
                payload_json=payload_json,
                occurred_at=occurred_at,
                error_title=error_title,
            )
            await session.commit()
        return inserted

    async def record_outbound_many(
        self, records: Sequence[OutboundRecord], *, status: str, occurred_at: datetime
    ) -> None:
        """`record_outbound` for many messages in one transaction and one statement executed
        for many rows (compiled once, not a statement as long as the batch): a campaign chunk
        costs one commit, and messages recorded before are left as they are."""
        _require_aware("occurred_at", occurred_at)
        if not records:
            return
        recorded_at = utcnow()
        rows = [
            {
                "contact_id": r.contact_id,
                "direction": "outbound",
                "kind": r.kind,
                "message_id": r.message_id,
                "status": status,
                "text": r.text,
                "payload_json": r.payload_json,
                "occurred_at": occurred_at,
                "recorded_at": recorded_at,
                "wamid": None,
                "error_code": None,
                "error_title": None,
            }
            for r in records
        ]
        async with self._sessions() as session:
            connection = await session.connection()
            await connection.execute(_insert_ignoring_duplicates(session), rows)
            await session.commit()

    async def record_flow_step(
        self,
        contact_id: int,
        *,
        event_id: str,
        from_state: str,
        to_state: str,
        trigger: str,
        occurred_at: datetime,
        label: str = "",
        why: str = "",
    ) -> bool:
        """Record one step of the conversation (``from_state`` -> ``to_state`` on ``trigger``).

        The conversation table keeps only where a contact stands; these rows are how it got
        there, for the agents' console. `why` is the reason an unclear wish to stop was asked
        about (the `stop_intent` evidence), shown with the step. Keyed on the event that
        caused the step, so a replayed event records nothing twice; False when already
        recorded.
        """
        _require_aware("occurred_at", occurred_at)
        payload = {
            "event_id": event_id,
            "from": from_state,
            "to": to_state,
            "trigger": trigger,
            "label": label,
        }
        if why:
            payload["why"] = why
        async with self._sessions() as session:
            inserted = await self._insert(
                session,
                contact_id=contact_id,
                direction="flow",
                kind="flow_step",
                message_id=flow_step_id(event_id),
                text=f"{from_state} -> {to_state}: {label or trigger}",
                payload_json=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
                occurred_at=occurred_at,
            )
            await session.commit()
        return inserted

    async def message_id_of(self, wamid: str) -> str | None:
        """Our id of the outbound message Meta knows as `wamid`; None when we have not recorded
        that wamid (not ours, or the sender has not yet written what Meta answered)."""
        async with self._sessions() as session:
            return (
                await session.exec(
                    select(TranscriptEntry.message_id).where(
                        col(TranscriptEntry.wamid) == wamid,
                        col(TranscriptEntry.direction) == "outbound",
                    )
                )
            ).first()

    async def mark_outbound(
        self,
        message_id: str,
        *,
        status: str,
        wamid: str | None = None,
        error_code: int | None = None,
        error_title: str | None = None,
    ) -> bool:
        """Note what became of an outbound message (e.g. accepted by Meta with ``wamid``).

        The status only moves forward. Status callbacks that arrived before the wamid was
        known are applied now. Returns False when no outbound row has this ``message_id``.
        """
        async with self._sessions() as session:
            row = (
                await session.exec(
                    select(TranscriptEntry).where(
                        col(TranscriptEntry.message_id) == message_id,
                        col(TranscriptEntry.direction) == "outbound",
                    )
                )
            ).first()
            if row is None:
                return False
            if wamid is not None:
                row.wamid = wamid
                session.add(row)
                await session.flush()
            await self._advance(
                session,
                message_id=message_id,
                status=status,
                error_code=error_code,
                error_title=error_title,
            )
            if row.wamid is not None:
                for earlier, code, title in await self._recorded_statuses(session, row.wamid):
                    await self._advance(
                        session,
                        message_id=message_id,
                        status=earlier,
                        error_code=code,
                        error_title=title,
                    )
            await session.commit()
        return True

    async def mark_outbound_many(self, marks: Sequence[OutboundMark]) -> None:
        """`mark_outbound` for many messages in one transaction (the sender's batch): the
        wamids in one statement, each status in one statement, then the status callbacks that
        arrived before their wamid was known."""
        if not marks:
            return
        table = TranscriptEntry.__table__  # type: ignore[attr-defined]
        outbound = table.c.direction == "outbound"
        async with self._sessions() as session:
            connection = await session.connection()
            with_wamid = [m for m in marks if m.wamid is not None]
            if with_wamid:
                await connection.execute(
                    update(table)
                    .where(outbound, table.c.message_id == bindparam("b_message_id"))
                    .values(wamid=bindparam("b_wamid")),
                    [{"b_message_id": m.message_id, "b_wamid": m.wamid} for m in with_wamid],
                )
            by_status: dict[str, list[OutboundMark]] = {}
            for mark in marks:
                by_status.setdefault(mark.status, []).append(mark)
            for status, group in by_status.items():
                lower = _lower_statuses(status)
                if not lower:
                    continue
                await connection.execute(
                    update(table)
                    .where(
                        outbound,
                        table.c.message_id == bindparam("b_message_id"),
                        # not IN (an expanding parameter cannot be used with executemany)
                        or_(*(table.c.status == name for name in lower)),
                    )
                    .values(
                        status=status,
                        error_code=func.coalesce(
                            bindparam("b_code", type_=Integer), table.c.error_code
                        ),
                        error_title=func.coalesce(
                            bindparam("b_title", type_=String), table.c.error_title
                        ),
                    ),
                    [
                        {
                            "b_message_id": m.message_id,
                            "b_code": m.error_code,
                            "b_title": m.error_title,
                        }
                        for m in group
                    ],
                )
            await self._apply_early_statuses(session, [m.message_id for m in marks])
            await session.commit()

    async def _apply_early_statuses(self, session: AsyncSession, message_ids: list[str]) -> None:
        """Status callbacks recorded for these messages' wamids (possibly before the wamid was
        known here) move them forward; usually there are none."""
        sent = aliased(TranscriptEntry)
        status = aliased(TranscriptEntry)
        rows = (
            await session.exec(
                select(sent.message_id, status.status, status.error_code, status.error_title)
                .join(status, col(status.wamid) == col(sent.wamid))
                .where(
                    col(sent.direction) == "outbound",
                    col(sent.message_id).in_(message_ids),
                    col(status.direction) == "status",
                )
            )
        ).all()
        for message_id, earlier, code, title in rows:
            if message_id is not None and earlier is not None:
                await self._advance(
                    session,
                    message_id=message_id,
                    status=earlier,
                    error_code=code,
                    error_title=title,
                )

    async def record_status(
        self,
        *,
        wamid: str,
        status: str,
        contact_id: int | None = None,
        error_code: int | None = None,
        error_title: str | None = None,
        occurred_at: datetime,
    ) -> bool:
        """Record a delivery status and move the matching outbound message forward.

        ``contact_id`` defaults to the contact of the outbound message with this ``wamid``.
        Returns False when this (wamid, status) was already recorded.
        """
        _require_aware("occurred_at", occurred_at)
        async with self._sessions() as session:
            if contact_id is None:
                contact_id = (
                    await session.exec(
                        select(TranscriptEntry.contact_id).where(
                            col(TranscriptEntry.wamid) == wamid,
                            col(TranscriptEntry.direction) == "outbound",
                        )
                    )
                ).first()
            inserted = await self._insert(
                session,
                contact_id=contact_id,
                direction="status",
                kind="status",
                wamid=wamid,
                status=status,
                error_code=error_code,
                error_title=error_title,
                occurred_at=occurred_at,
            )
            if inserted:
                await self._advance(
                    session,
                    wamid=wamid,
                    status=status,
                    error_code=error_code,
                    error_title=error_title,
                )
            await session.commit()
        return inserted

    async def list_for_contact(
        self,
        contact_id: int,
        *,
        limit: int = 100,
        before: datetime | None = None,
        flow_steps: bool = False,
    ) -> list[TranscriptEntry]:
        """The latest ``limit`` entries (before ``before``), oldest first by occurred_at, id.

        Messages and statuses only, unless ``flow_steps``: the conversation's steps are the
        console's, not part of what was said.
        """
        statement = select(TranscriptEntry).where(col(TranscriptEntry.contact_id) == contact_id)
        if not flow_steps:
            statement = statement.where(col(TranscriptEntry.direction) != "flow")
        if before is not None:
            _require_aware("before", before)
            statement = statement.where(col(TranscriptEntry.occurred_at) < before)
        statement = statement.order_by(
            col(TranscriptEntry.occurred_at).desc(), col(TranscriptEntry.id).desc()
        ).limit(limit)
        async with self._sessions() as session:
            newest_first = list((await session.exec(statement)).all())
        newest_first.reverse()
        return newest_first

    async def get_outbound(self, message_id: str) -> TranscriptEntry | None:
        """The outbound entry recorded under our ``message_id``."""
        async with self._sessions() as session:
            return (
                await session.exec(
                    select(TranscriptEntry).where(
                        col(TranscriptEntry.message_id) == message_id,
                        col(TranscriptEntry.direction) == "outbound",
                    )
                )
            ).first()

    @staticmethod
    async def _recorded_statuses(
        session: AsyncSession, wamid: str
    ) -> list[tuple[str, int | None, str | None]]:
        result = await session.exec(
            select(
                TranscriptEntry.status, TranscriptEntry.error_code, TranscriptEntry.error_title
            ).where(
                col(TranscriptEntry.wamid) == wamid,
                col(TranscriptEntry.direction) == "status",
            )
        )
        return [(status, code, title) for status, code, title in result.all() if status is not None]

    @staticmethod
    async def _advance(
        session: AsyncSession,
        *,
        status: str,
        message_id: str | None = None,
        wamid: str | None = None,
        error_code: int | None = None,
        error_title: str | None = None,
    ) -> None:
        """Move an outbound row to ``status`` if that is forward; one atomic UPDATE."""
        lower = _lower_statuses(status)
        if not lower:
            return
        statement = update(TranscriptEntry).where(
            col(TranscriptEntry.direction) == "outbound",
            col(TranscriptEntry.status).in_(lower),
        )
        if message_id is not None:
            statement = statement.where(col(TranscriptEntry.message_id) == message_id)
        else:
            statement = statement.where(col(TranscriptEntry.wamid) == wamid)
        values: dict[str, Any] = {"status": status}
        if error_code is not None:
            values["error_code"] = error_code
        if error_title is not None:
            values["error_title"] = error_title
        await session.exec(statement.values(**values))

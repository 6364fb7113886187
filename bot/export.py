"""The consent export: every current state with the ledger row that decided it, streamed.

A business exports consent to prove it to an auditor, to load it into a CRM or a warehouse, or to
move away from optin-bot; the export must work on millions of contacts without holding them in
memory. The states are read in keyset-paginated batches (``LedgerRepository.stream_states``),
joined to their contacts' identifiers one batch at a time, and turned into CSV or JSON Lines
chunks that the HTTP layer writes out as they come: memory stays flat whatever the size.

After an erasure a contact appears under its pseudonyms, opted out, with its evidence empty.
CSV cells that a spreadsheet would run as formulas get a leading `'` (``bot.csvsafe``); JSON
Lines keeps every value exactly.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.csvsafe import formula_safe_row
from bot.db.consent_models import ConsentEvent, ConsentState
from bot.db.ledger import LedgerRepository
from bot.db.models import Contact

#: The fields of one exported state, in CSV column order.
EXPORT_COLUMNS: Final = (
    "contact_id",
    "wa_id",
    "user_id",
    "category",
    "status",
    "since",
    "updated_at",
    "source",
    "method",
    "policy_version",
    "event_id",
    "event_action",
    "event_recorded_at",
    "event_hash",
    "evidence",
    "evidence_digest",
    "evidence_erased_at",
)

EXPORT_BATCH: Final = 500


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"

    @property
    def content_type(self) -> str:
        return "text/csv" if self is ExportFormat.CSV else "application/x-ndjson"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _record(
    state: ConsentState, event: ConsentEvent, contact: tuple[str | None, str | None]
) -> dict[str, Any]:
    """One state as a JSON-ready dict (``evidence`` still as its JSON text)."""
    return {
        "contact_id": state.contact_id,
        "wa_id": contact[0],
        "user_id": contact[1],
        "category": state.category,
        "status": state.status,
        "since": _iso(state.since),
        "updated_at": _iso(state.updated_at),
        "source": state.source,
        "method": state.method,
        "policy_version": state.policy_version,
        "event_id": event.id,
        "event_action": event.action,
        "event_recorded_at": _iso(event.recorded_at),
        "event_hash": event.hash,
        "evidence": event.evidence_json,
        "evidence_digest": event.evidence_digest,
        "evidence_erased_at": _iso(event.erased_at),
    }


class ConsentExport:
    """Produces the export, chunk by chunk, from the ledger and the contacts."""

    def __init__(
        self,
        ledger: LedgerRepository,
        sessions: async_sessionmaker[AsyncSession],
        *,
        batch: int = EXPORT_BATCH,
    ) -> None:
        self._ledger = ledger
        self._sessions = sessions
        self._batch = batch

    async def _identifiers(
        self, contact_ids: Sequence[int]
    ) -> dict[int, tuple[str | None, str | None]]:
        async with self._sessions() as session:
            rows = await session.exec(
                select(Contact.id, Contact.wa_id, Contact.user_id).where(
                    col(Contact.id).in_(sorted(set(contact_ids)))
                )
            )
            return {
                contact_id: (wa_id, user_id)
                for contact_id, wa_id, user_id in rows.all()
                if contact_id is not None
            }

    async def records(
        self, *, since: datetime | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Batches of exported states (changed at or after ``since``), by contact and category."""
        pending: list[tuple[ConsentState, ConsentEvent]] = []
        async for state, event in self._ledger.stream_states(since=since, batch=self._batch):
            pending.append((state, event))
            if len(pending) == self._batch:
                yield await self._resolve(pending)
                pending = []
        if pending:
            yield await self._resolve(pending)

    async def _resolve(
        self, pairs: list[tuple[ConsentState, ConsentEvent]]
    ) -> list[dict[str, Any]]:
        contacts = await self._identifiers([state.contact_id for state, _ in pairs])
        return [
            _record(state, event, contacts.get(state.contact_id, (None, None)))
            for state, event in pairs
        ]

    async def chunks(
        self, export_format: ExportFormat, *, since: datetime | None = None
    ) -> AsyncIterator[bytes]:
        """The export as encoded chunks: a CSV header first, then one chunk per batch."""
        if export_format is ExportFormat.CSV:
            async for chunk in self._csv(since):
                yield chunk
            return
        async for batch in self.records(since=since):
            yield "".join(_json_line(record) for record in batch).encode("utf-8")

    async def _csv(self, since: datetime | None) -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        async for batch in self.records(since=since):
            writer.writerows(formula_safe_row(record) for record in batch)
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue().encode("utf-8")


def evidence_value(evidence_json: str | None) -> Any:
    """Stored evidence as JSON data: None once erased, the raw text if it is not JSON (a row
    edited behind the ledger's back, which verification reports)."""
    if evidence_json is None:
        return None
    try:
        return json.loads(evidence_json)
    except ValueError:
        return evidence_json


def _json_line(record: dict[str, Any]) -> str:
    line = {**record, "evidence": evidence_value(record["evidence"])}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"

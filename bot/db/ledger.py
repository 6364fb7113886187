"""The consent ledger: append-only, hash-chained evidence, and the state derived from it.

Every consent decision is appended to the chain of the contact it was made for, in the same
transaction as the update of the current-state projection, the chain head and (when given) the
conversation record, so a worker that crashes half-way leaves either all or nothing. Any number
of workers and API processes may call ``apply`` at once: appends to one chain are serialised by
the database (see ``bot.db.ledger_append``), never by the callers. Replaying a decision with the
same ``event_key`` writes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import and_, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.consent_models import ConsentEvent, ConsentState, Conversation
from bot.db.ledger_append import (
    ConsentChange,
    ConversationRecord,
    append_changes,
    check_change,
    upsert_conversation,
)
from bot.db.ledger_verify import (
    ChainProblem,
    ProblemKind,
    VerifyReport,
    decided_states_page,
    verify_chains,
)
from bot.db.models import utcnow
from flows.consent import ConsentStatus, Method, Source

__all__ = [
    "ChainProblem",
    "ConsentChange",
    "ConsentView",
    "ConversationRecord",
    "LedgerRepository",
    "ProblemKind",
    "VerifyReport",
]

APPLY_ATTEMPTS: Final = 5


@dataclass(frozen=True, slots=True)
class ConsentView:
    """The current state of one category for one contact."""

    category: str
    status: ConsentStatus
    since: datetime | None
    source: Source | None
    method: Method | None
    policy_version: str | None
    last_event_id: int | None


def _view(state: ConsentState) -> ConsentView:
    return ConsentView(
        category=state.category,
        status=ConsentStatus(state.status),
        since=state.since,
        source=Source(state.source),
        method=Method(state.method),
        policy_version=state.policy_version,
        last_event_id=state.last_event_id,
    )


class LedgerRepository:
    """Consent ledger, consent states and conversations, stored through ``session_factory``."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = session_factory

    async def current(self, contact_id: int) -> dict[str, ConsentView]:
        """Every category the contact has a state for (absent categories are ``none``)."""
        async with self._sessions() as session:
            rows = await session.exec(
                select(ConsentState).where(col(ConsentState.contact_id) == contact_id)
            )
            return {state.category: _view(state) for state in rows.all()}

    async def conversation(self, contact_id: int) -> ConversationRecord | None:
        async with self._sessions() as session:
            row = await session.get(Conversation, contact_id)
        if row is None:
            return None
        return ConversationRecord(
            state=row.state,
            token=row.token,
            data_json=row.data_json,
            last_event_id=row.last_event_id,
            outbox_json=row.outbox_json,
        )

    async def apply(
        self,
        contact_id: int,
        changes: Sequence[ConsentChange],
        *,
        conversation: ConversationRecord | None = None,
    ) -> list[ConsentEvent]:
        """Append ``changes``, update the states and store ``conversation``, in one transaction.

        Changes whose ``event_key`` is already in the ledger are skipped; the rows actually
        written are returned. Raises ``LookupError`` when the contact does not exist.
        """
        for change in changes:
            check_change(change)
        if not changes and conversation is None:
            return []
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            async with self._sessions() as session:
                try:
                    now = utcnow()
                    written = await append_changes(session, contact_id, changes, now)
                    if conversation is not None:
                        await upsert_conversation(session, contact_id, conversation, now)
                    await session.commit()
                    return written
                except IntegrityError:
                    # The same event_key written for another contact at the same moment: the
                    # retry finds it and skips it.
                    await session.rollback()
                    if attempt == APPLY_ATTEMPTS:
                        raise
        raise AssertionError("unreachable")

    async def events_by_keys(self, keys: Sequence[str]) -> list[ConsentEvent]:
        """The rows written under these idempotency keys, in ledger order."""
        if not keys:
            return []
        async with self._sessions() as session:
            rows = await session.exec(
                select(ConsentEvent)
                .where(col(ConsentEvent.event_key).in_(list(keys)))
                .order_by(col(ConsentEvent.chain), col(ConsentEvent.seq))
            )
            return list(rows.all())

    async def clear_outbox(self, contact_id: int, last_event_id: str) -> None:
        """Forget the outbox once carried out, unless a newer event has replaced it since."""
        async with self._sessions() as session:
            await session.exec(
                update(Conversation)
                .where(
                    col(Conversation.contact_id) == contact_id,
                    col(Conversation.last_event_id) == last_event_id,
                    col(Conversation.outbox_json).is_not(None),
                )
                .values(outbox_json=None, updated_at=utcnow())
            )
            await session.commit()

    async def events(
        self, contact_id: int, *, limit: int = 1000, after_id: int | None = None
    ) -> list[ConsentEvent]:
        """The contact's ledger rows (its own chain and those of contacts merged into it),
        oldest first by (recorded_at, id), starting after the row ``after_id``.

        Raises ``LookupError`` when ``after_id`` is not one of the contact's rows.
        """
        statement = select(ConsentEvent).where(col(ConsentEvent.contact_id) == contact_id)
        async with self._sessions() as session:
            if after_id is not None:
                anchor = (
                    await session.exec(
                        select(ConsentEvent.recorded_at).where(
                            col(ConsentEvent.id) == after_id,
                            col(ConsentEvent.contact_id) == contact_id,
                        )
                    )
                ).first()
                if anchor is None:
                    raise LookupError(f"contact {contact_id} has no ledger row {after_id}")
                statement = statement.where(
                    or_(
                        col(ConsentEvent.recorded_at) > anchor,
                        and_(
                            col(ConsentEvent.recorded_at) == anchor,
                            col(ConsentEvent.id) > after_id,
                        ),
                    )
                )
            statement = statement.order_by(
                col(ConsentEvent.recorded_at), col(ConsentEvent.id)
            ).limit(limit)
            return list((await session.exec(statement)).all())

    async def verify(self, contact_id: int | None = None) -> VerifyReport:
        """Recompute the chains of one contact, or every chain when ``contact_id`` is None."""
        return await verify_chains(self._sessions, contact_id)

    async def stream_states(
        self, *, since: datetime | None = None, batch: int = 1000
    ) -> AsyncIterator[tuple[ConsentState, ConsentEvent]]:
        """Every current state (changed at or after ``since``) with the row that decided it,
        by (contact_id, category), read ``batch`` rows at a time in short transactions."""
        after: tuple[int, str] | None = None
        while True:
            statement = decided_states_page(
                after, batch, None if since is None else col(ConsentState.updated_at) >= since
            )
            async with self._sessions() as session:
                rows = list((await session.exec(statement)).all())
            for state, event in rows:
                yield state, event
            if len(rows) < batch:
                return
            last = rows[-1][0]
            after = (last.contact_id, last.category)

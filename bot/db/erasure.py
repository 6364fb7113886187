"""Erasing one contact's personal data from the database, in one transaction.

What goes: the contact's number, BSUID, names and locale (replaced by keyed pseudonyms or
cleared), the values of its identity history (pseudonymised), the evidence of its ledger rows
(the text; its digest stays under the hash), the readable form of their idempotency keys (a
key may hold a Meta wamid, which encodes the phone number), the texts, payloads and wamids of
its transcript rows, the wamids other tables keep for it (campaign recipients), and its
conversation record. What stays: the contact row and its id, its consent states, every ledger
row (hash chain intact), and one new ``withdrawn`` row per category recording the erasure, so
the pseudonymous record still says "never message this person".

A new table that keeps personal data of a contact must be erased here too (and the end-to-end
test, which searches every table for the contact's data, will say so).

The contact row is locked first (a write, so SQLite's write lock is taken before anything is
read; ``FOR UPDATE`` on PostgreSQL, which holds off appends and transcript rows of the contact
until the erasure commits), then the chain head through ``append_changes``: the lock order of
``bot.db.ledger_append``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import bindparam, delete, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.consent_models import (
    ERASED_KEY_PREFIX,
    ConsentEvent,
    ConsentState,
    Conversation,
    erased_event_key,
)
from bot.db.ledger_append import ConsentChange, append_changes, check_change
from bot.db.migrate import target_metadata
from bot.db.models import (
    CONTACTS_TABLE,
    Contact,
    ContactIdentity,
    IdentityKind,
    TranscriptEntry,
)
from bot.db.pseudonyms import Pseudonymiser, is_erased, is_pseudonym
from flows.consent import ConsentAction, ConsentStatus, Method, Source

#: Prefix of the idempotency keys of the ``withdrawn`` rows an erasure appends.
ERASURE_KEY_PREFIX: Final = "erasure:"


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    """What to erase and how to record it; ``erasure_id`` names this erasure in the ledger."""

    contact_id: int
    erasure_id: str
    categories: tuple[str, ...]
    business_name: str
    requested_via: str
    now: datetime


@dataclass(frozen=True, slots=True)
class ErasedRecords:
    """What one erasure did in the database.

    ``former_identifiers`` are the real identifiers the contact had, kept only in memory so the
    caller can find them in Redis; ``already_erased`` says the contact had been erased before
    (then ``erasure_id`` and ``erased_at`` are those of the latest earlier erasure).
    """

    contact: Contact
    former_identifiers: tuple[str, ...]
    already_erased: bool
    erasure_id: str
    erased_at: datetime
    withdrawal_rows: tuple[ConsentEvent, ...]
    evidence_erased: int
    identities_pseudonymised: int
    transcript_entries_cleared: int
    conversation_deleted: bool


async def _lock_contact(session: AsyncSession, contact_id: int, now: datetime) -> Contact | None:
    """The contact, locked for this transaction (None when it does not exist)."""
    statement = (
        select(Contact)
        .where(col(Contact.id) == contact_id)
        .execution_options(populate_existing=True)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        return (await session.exec(statement.with_for_update())).first()
    # SQLite: write first, so the database's write lock is held before anything is read.
    touched = await session.exec(
        update(Contact).where(col(Contact.id) == contact_id).values(updated_at=now)
    )
    if touched.rowcount == 0:
        return None
    return (await session.exec(statement)).one()


async def _previous_erasure(session: AsyncSession, contact_id: int) -> tuple[str, datetime] | None:
    """(erasure id, time) of the contact's latest erasure, if any."""
    row = (
        await session.exec(
            select(ConsentEvent)
            .where(
                col(ConsentEvent.contact_id) == contact_id,
                col(ConsentEvent.method) == Method.ERASURE.value,
            )
            .order_by(col(ConsentEvent.id).desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    evidence = json.loads(row.evidence_json) if row.evidence_json else {}
    return str(evidence.get("erasure_id", "")), row.recorded_at


async def _withdraw(
    session: AsyncSession, request: ErasureRequest, already_erased: bool
) -> list[ConsentEvent]:
    """One ``withdrawn`` row per category (on a second erasure: only where not opted out)."""
    states = {
        state.category: state.status
        for state in (
            await session.exec(
                select(ConsentState).where(col(ConsentState.contact_id) == request.contact_id)
            )
        ).all()
    }
    categories = list(dict.fromkeys([*request.categories, *sorted(states)]))
    if already_erased:
        categories = [c for c in categories if states.get(c) != ConsentStatus.OPTED_OUT.value]
    changes = [
        ConsentChange(
            category=category,
            action=ConsentAction.WITHDRAWN,
            source=Source.API,
            method=Method.ERASURE,
            evidence={"erasure_id": request.erasure_id, "requested_via": request.requested_via},
            business_name=request.business_name,
            policy_version=None,
            occurred_at=request.now,
            event_key=f"{ERASURE_KEY_PREFIX}{request.erasure_id}:{category}",
        )
        for category in categories
    ]
    for change in changes:
        check_change(change)
    if not changes:
        return []
    return await append_changes(session, request.contact_id, changes, request.now)


async def _erase_evidence(session: AsyncSession, contact_id: int, now: datetime) -> int:
    """Drop the evidence and the readable keys of every row but the erasures' own."""
    rows = (
        await session.exec(
            select(ConsentEvent.id, ConsentEvent.event_key, ConsentEvent.evidence_json).where(
                col(ConsentEvent.contact_id) == contact_id,
                col(ConsentEvent.method) != Method.ERASURE.value,
                or_(
                    col(ConsentEvent.evidence_json).is_not(None),
                    col(ConsentEvent.event_key).not_like(f"{ERASED_KEY_PREFIX}%"),
                ),
            )
        )
    ).all()
    if not rows:
        return 0
    table: Any = ConsentEvent.__table__  # type: ignore[attr-defined]
    await session.exec(
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values(event_key=bindparam("new_key"), evidence_json=None, erased_at=now),
        params=[{"row_id": row_id, "new_key": erased_event_key(key)} for row_id, key, _ in rows],
    )
    return sum(1 for _, _, evidence in rows if evidence is not None)


async def _erase_transcript(session: AsyncSession, contact_id: int) -> int:
    rows = (
        await session.exec(
            select(TranscriptEntry.id, TranscriptEntry.wamid).where(
                col(TranscriptEntry.contact_id) == contact_id,
                or_(
                    col(TranscriptEntry.text).is_not(None),
                    col(TranscriptEntry.payload_json).is_not(None),
                    col(TranscriptEntry.wamid).not_like(f"{ERASED_KEY_PREFIX}%"),
                ),
            )
        )
    ).all()
    if not rows:
        return 0
    table: Any = TranscriptEntry.__table__  # type: ignore[attr-defined]
    await session.exec(
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values(text=None, payload_json=None, wamid=bindparam("new_wamid")),
        params=[
            {"row_id": row_id, "new_wamid": erased_event_key(wamid) if wamid else None}
            for row_id, wamid in rows
        ],
    )
    return len(rows)


async def _erase_other_wamids(session: AsyncSession, contact_id: int) -> None:
    """Digest the Meta message ids other tables keep for the contact (campaign recipients...):
    every table with a ``wamid`` column and a foreign key to the contact."""
    for table in target_metadata().sorted_tables:
        if table.name == TranscriptEntry.__tablename__ or "wamid" not in table.c:
            continue
        for foreign_key in table.foreign_keys:
            if foreign_key.column.table.name != CONTACTS_TABLE:
                continue
            owner = foreign_key.parent
            wamids = (
                await session.exec(
                    select(table.c.wamid)
                    .where(
                        owner == contact_id,
                        table.c.wamid.is_not(None),
                        table.c.wamid.not_like(f"{ERASED_KEY_PREFIX}%"),
                    )
                    .distinct()
                )
            ).all()
            for (wamid,) in wamids:
                await session.exec(
                    update(table)
                    .where(owner == contact_id, table.c.wamid == wamid)
                    .values(wamid=erased_event_key(wamid))
                )


async def _release_pseudonym(
    session: AsyncSession, contact_id: int, kind: IdentityKind, pseudonym: str, now: datetime
) -> None:
    """Another erased record may hold the same pseudonym as current (a recycled number whose
    owners were both erased): it gives it up, as a record gives up a number that moved on."""
    column = col(Contact.wa_id) if kind == "wa_id" else col(Contact.user_id)
    others = (
        await session.exec(
            select(Contact).where(column == pseudonym, col(Contact.id) != contact_id)
        )
    ).all()
    for other in others:
        if (other.user_id if kind == "wa_id" else other.wa_id) is None:
            raise RuntimeError(f"contact {other.id} holds {pseudonym} as its only identifier")
        setattr(other, kind, None)
        other.updated_at = now
        session.add(other)
    await session.exec(
        update(ContactIdentity)
        .where(
            col(ContactIdentity.contact_id) != contact_id,
            col(ContactIdentity.kind) == kind,
            col(ContactIdentity.value) == pseudonym,
            col(ContactIdentity.valid_to).is_(None),
        )
        .values(valid_to=now)
    )
    await session.flush()


async def _pseudonymise_contact(
    session: AsyncSession, contact: Contact, pseudonyms: Pseudonymiser, now: datetime
) -> tuple[tuple[str, ...], int]:
    """Replace the contact's identifiers and identity history by pseudonyms and clear its
    profile; return the real identifiers it had and how many identity rows changed."""
    contact_id = contact.id
    assert contact_id is not None
    identities = (
        await session.exec(
            select(ContactIdentity).where(col(ContactIdentity.contact_id) == contact_id)
        )
    ).all()
    former = {contact.wa_id, contact.user_id, *(identity.value for identity in identities)}
    real = tuple(sorted(value for value in former if value and not is_pseudonym(value)))
    kinds: tuple[IdentityKind, ...] = ("wa_id", "user_id")
    for kind in kinds:
        value = getattr(contact, kind)
        if value is not None and not is_pseudonym(value):
            await _release_pseudonym(session, contact_id, kind, pseudonyms.of(kind, value), now)
    changed = 0
    for identity in identities:
        if not is_pseudonym(identity.value):
            kind = "user_id" if identity.kind == "user_id" else "wa_id"
            identity.value = pseudonyms.of(kind, identity.value)
            session.add(identity)
            changed += 1
    await session.flush()
    for kind in kinds:
        value = getattr(contact, kind)
        if value is not None:
            setattr(contact, kind, pseudonyms.of(kind, value))
    contact.parent_user_id = None
    contact.username = None
    contact.profile_name = None
    contact.locale = None
    contact.updated_at = now
    session.add(contact)
    await session.flush()
    return real, changed


async def erase_records(
    session: AsyncSession, request: ErasureRequest, pseudonyms: Pseudonymiser
) -> ErasedRecords | None:
    """Erase the contact's personal data in ``session`` (the caller commits); None when the
    contact does not exist. Running it again on an erased contact changes nothing that was
    erased already and reports what, if anything, was left."""
    contact = await _lock_contact(session, request.contact_id, request.now)
    if contact is None:
        return None
    already_erased = is_erased(contact.wa_id, contact.user_id)
    previous = await _previous_erasure(session, request.contact_id) if already_erased else None
    withdrawals = await _withdraw(session, request, already_erased)
    evidence = await _erase_evidence(session, request.contact_id, request.now)
    transcript = await _erase_transcript(session, request.contact_id)
    await _erase_other_wamids(session, request.contact_id)
    former, identities = await _pseudonymise_contact(session, contact, pseudonyms, request.now)
    dropped = await session.exec(
        delete(Conversation).where(col(Conversation.contact_id) == request.contact_id)
    )
    await session.flush()
    erasure_id, erased_at = previous or (request.erasure_id, request.now)
    return ErasedRecords(
        contact=contact,
        former_identifiers=former,
        already_erased=already_erased,
        erasure_id=erasure_id,
        erased_at=erased_at,
        withdrawal_rows=tuple(withdrawals),
        evidence_erased=evidence,
        identities_pseudonymised=identities,
        transcript_entries_cleared=transcript,
        conversation_deleted=dropped.rowcount > 0,
    )

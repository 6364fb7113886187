"""Writing the consent ledger: append to a chain, fold into the states, settle a merge.

These functions work inside a caller's transaction (``LedgerRepository.apply``, or the contact
merge), so a ledger row, the state it changes, the chain head and the conversation record are
committed together or not at all. Appends to one chain are serialised by the database itself:
a row lock on the chain's head on PostgreSQL, the single writer on SQLite.

Lock order, everywhere: contact rows first (in id order), then the chain head. An append takes a
shared lock on its contact, a merge an exclusive one on both contacts, so neither can deadlock
with the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.consent_models import (
    ERASED_KEY_PREFIX,
    GENESIS_HASH,
    ConsentEvent,
    ConsentState,
    Conversation,
    LedgerHead,
    canonical_json,
    erased_event_key,
    event_hash,
    sha256_hex,
)
from bot.db.ledger_keys import head_mac, keys_of, row_mac
from bot.db.models import Contact
from flows.consent import ConsentAction, ConsentStatus, Method, Source, status_after
from flows.consent_order import Standing, overruled

EvidenceValue = str | int | float | bool | None

#: Actions that state a status outright: they renew ``since`` and the evidence even when the
#: status stays the same (a second opt-in, a reconfirmation, a second STOP).
DECIDING_ACTIONS: Final = frozenset(
    {
        ConsentAction.GRANTED,
        ConsentAction.RECONFIRMED,
        ConsentAction.WITHDRAWN,
        ConsentAction.LAPSED,
    }
)

#: The action that carries an absorbed contact's status over to the survivor of a merge.
_CARRY_OVER: Final[Mapping[ConsentStatus, ConsentAction]] = {
    ConsentStatus.OPTED_OUT: ConsentAction.WITHDRAWN,
    ConsentStatus.OPTED_IN: ConsentAction.GRANTED,
    ConsentStatus.LAPSED: ConsentAction.LAPSED,
    ConsentStatus.PENDING: ConsentAction.PENDING,
}


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One consent decision to append; ``event_key`` makes appending it idempotent."""

    category: str
    action: ConsentAction
    source: Source
    method: Method
    evidence: Mapping[str, EvidenceValue]
    business_name: str
    policy_version: str | None
    occurred_at: datetime
    event_key: str


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """The stored conversation of one contact (see ``Conversation``)."""

    state: str
    token: str
    data_json: str
    last_event_id: str
    outbox_json: str | None


def check_change(change: ConsentChange) -> None:
    """Refuse a change the ledger cannot store faithfully (raises ``ValueError``)."""
    if change.occurred_at.tzinfo is None or change.occurred_at.utcoffset() is None:
        raise ValueError(f"occurred_at of {change.event_key!r} must be timezone-aware")
    if not change.event_key or len(change.event_key) > 256:
        raise ValueError("event_key must be 1 to 256 characters")
    if change.event_key.startswith(ERASED_KEY_PREFIX):
        raise ValueError(f"event_key must not start with {ERASED_KEY_PREFIX!r} (erased keys do)")
    if not change.category or len(change.category) > 64:
        raise ValueError("category must be 1 to 64 characters")
    ConsentAction(change.action)
    Source(change.source)
    Method(change.method)


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else ""


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = _dialect(session)
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"unsupported database dialect {dialect!r}")


async def _lock_contacts(session: AsyncSession, contact_ids: Sequence[int], *, share: bool) -> None:
    """Check the contacts exist and, on PostgreSQL, lock them (in id order) for this transaction.

    ``share`` takes the weak lock an append needs (the contact must not vanish meanwhile); a
    merge takes the exclusive one, so appends for the contacts being merged wait for it.
    """
    ids = sorted(set(contact_ids))
    statement = select(Contact.id).where(col(Contact.id).in_(ids)).order_by(col(Contact.id))
    if _dialect(session) == "postgresql":
        statement = statement.with_for_update(read=share, key_share=share)
    found = set((await session.exec(statement)).all())
    missing = [contact_id for contact_id in ids if contact_id not in found]
    if missing:
        raise LookupError(f"no contact with id {missing[0]}")


async def _lock_head(session: AsyncSession, chain: int) -> LedgerHead:
    """The head of ``chain``, created if new, locked until the transaction ends.

    On SQLite the INSERT takes the database's write lock (unless the transaction holds it
    already) before anything below is read, so those reads cannot be stale.
    """
    table = LedgerHead.__table__  # type: ignore[attr-defined]
    await session.exec(
        _insert(session, table)
        .values(chain=chain, seq=0, hash=GENESIS_HASH)
        .on_conflict_do_nothing(index_elements=["chain"])
    )
    statement = (
        select(LedgerHead)
        .where(col(LedgerHead.chain) == chain)
        .execution_options(populate_existing=True)
    )
    if _dialect(session) == "postgresql":
        statement = statement.with_for_update()
    return (await session.exec(statement)).one()


async def _states(
    session: AsyncSession, contact_id: int, categories: Sequence[str]
) -> dict[str, ConsentState]:
    """The contact's current states of ``categories``, as stored now."""
    rows = await session.exec(
        select(ConsentState)
        .where(
            col(ConsentState.contact_id) == contact_id,
            col(ConsentState.category).in_(sorted(set(categories))),
        )
        .execution_options(populate_existing=True)
    )
    return {state.category: state for state in rows.all()}


def _project(
    session: AsyncSession,
    states: dict[str, ConsentState],
    event: ConsentEvent,
    action: ConsentAction,
    now: datetime,
) -> None:
    """Fold one new ledger row into its state (in ``states``) with ``status_after``."""
    state = states.get(event.category)
    current = ConsentStatus(state.status) if state is not None else ConsentStatus.NONE
    before = (
        ConsentStatus(state.before_pending)
        if state is not None and state.before_pending is not None
        else None
    )
    status, before_pending = status_after(action, current, before)
    deciding = action in DECIDING_ACTIONS or status is not current
    if not deciding and (state is None or before_pending == before):
        return
    if event.id is None:
        raise RuntimeError("ledger row has not been flushed")
    if state is None:
        state = ConsentState(
            contact_id=event.contact_id,
            category=event.category,
            status=status.value,
            since=event.occurred_at,
            last_event_id=event.id,
            source=event.source,
            method=event.method,
        )
    if deciding:
        state.since = event.occurred_at
        state.last_event_id = event.id
        state.source = event.source
        state.method = event.method
        state.policy_version = event.policy_version
    state.status = status.value
    state.before_pending = before_pending.value if before_pending is not None else None
    state.updated_at = now
    states[event.category] = state
    session.add(state)


def _standing(state: ConsentState) -> Standing:
    return Standing(
        status=ConsentStatus(state.status),
        since=state.since,
        source=Source(state.source) if state.source else None,
    )


def _ordered(change: ConsentChange, standings: dict[str, Standing]) -> ConsentChange:
    """`change` as the ledger must record it: as it is, or, when an earlier-dated or business
    decision would override the customer's own later one (`flows.consent_order`), as an
    `overruled` row whose evidence says what arrived and why it changed nothing. `standings` is
    kept up to date with the batch's own decisions."""
    standing = standings.get(change.category)
    action = ConsentAction(change.action)
    # A merge carries the more protective state over by its own rule (`_carried_action`).
    merging = Method(change.method) is Method.CONTACT_MERGE
    reason = (
        None if merging else overruled(action, Source(change.source), change.occurred_at, standing)
    )
    if reason is not None:
        return replace(
            change,
            action=ConsentAction.OVERRULED,
            evidence={**change.evidence, "requested": action.value, "not_applied": reason},
        )
    if action in DECIDING_ACTIONS or standing is None:
        current = standing.status if standing is not None else ConsentStatus.NONE
        status, _ = status_after(action, current, None)
        if action in DECIDING_ACTIONS or status is not current:
            standings[change.category] = Standing(status, change.occurred_at, change.source)
    return change


def _row_values(
    contact_id: int, seq: int, prev_hash: str, change: ConsentChange, now: datetime
) -> dict[str, Any]:
    """Column values of the ledger row for ``change`` at ``seq`` of the contact's chain."""
    evidence_json = canonical_json(change.evidence)
    return {
        "contact_id": contact_id,
        "chain": contact_id,
        "seq": seq,
        "category": change.category,
        "action": ConsentAction(change.action).value,
        "source": Source(change.source).value,
        "method": Method(change.method).value,
        "evidence_json": evidence_json,
        "evidence_digest": sha256_hex(evidence_json),
        "business_name": change.business_name,
        "policy_version": change.policy_version,
        "occurred_at": change.occurred_at.astimezone(UTC),
        "recorded_at": now,
        "event_key": change.event_key,
        "prev_hash": prev_hash,
    }


async def append_changes(
    session: AsyncSession, contact_id: int, changes: Sequence[ConsentChange], now: datetime
) -> list[ConsentEvent]:
    """Append ``changes`` to the contact's own chain and fold them into its states.

    Changes whose ``event_key`` is already in the ledger (or earlier in ``changes``) are
    skipped, also when the row holding it was erased since (its key is then stored as
    ``erased_event_key``); the rows written are returned. Raises ``LookupError`` for an unknown
    contact.
    """
    await _lock_contacts(session, [contact_id], share=True)
    head = await _lock_head(session, contact_id)
    keys = [change.event_key for change in changes]
    lookup = sorted({*keys, *(erased_event_key(key) for key in keys)})
    known = set(
        (
            await session.exec(
                select(ConsentEvent.event_key).where(col(ConsentEvent.event_key).in_(lookup))
            )
        ).all()
    )
    fresh: list[tuple[ConsentEvent, ConsentAction]] = []
    seq, prev_hash = head.seq, head.hash
    signing = keys_of(session).signing_key
    standings = {
        category: _standing(state)
        for category, state in (
            await _states(session, contact_id, [change.category for change in changes])
        ).items()
    }
    for change in changes:
        if change.event_key in known or erased_event_key(change.event_key) in known:
            continue
        known.add(change.event_key)
        change = _ordered(change, standings)
        seq += 1
        values = _row_values(contact_id, seq, prev_hash, change, now)
        prev_hash = event_hash(values)
        if signing is not None:
            values["key_id"], values["mac"] = signing[0], row_mac(signing[1], prev_hash)
        fresh.append((ConsentEvent(**values, hash=prev_hash), ConsentAction(change.action)))
    if not fresh:
        return []
    session.add_all([event for event, _ in fresh])
    await session.flush()
    states = await _states(session, contact_id, [event.category for event, _ in fresh])
    for event, action in fresh:
        _project(session, states, event, action, now)
    head.seq, head.hash = seq, prev_hash
    head.key_id, head.mac = (
        (signing[0], head_mac(signing[1], contact_id, seq, prev_hash))
        if signing is not None
        else (None, None)
    )
    session.add(head)
    await session.flush()
    return [event for event, _ in fresh]


async def upsert_conversation(
    session: AsyncSession, contact_id: int, record: ConversationRecord, now: datetime
) -> None:
    """Store the contact's conversation record, replacing the previous one."""
    values = {
        "state": record.state,
        "token": record.token,
        "data_json": record.data_json,
        "last_event_id": record.last_event_id,
        "outbox_json": record.outbox_json,
        "updated_at": now,
    }
    table = Conversation.__table__  # type: ignore[attr-defined]
    await session.exec(
        _insert(session, table)
        .values(contact_id=contact_id, **values)
        .on_conflict_do_update(index_elements=["contact_id"], set_=values)
    )


def _carried_action(survivor: ConsentState, absorbed: ConsentState) -> ConsentAction | None:
    """What the survivor of a merge must record so it keeps the more protective state.

    An opt-out beats everything; otherwise the more recent decision wins, as far as
    ``status_after`` lets it (a pending request does not downgrade an opt-in). ``none`` is the
    absence of a decision and is never carried over.
    """
    current = ConsentStatus(survivor.status)
    if current is ConsentStatus.OPTED_OUT:
        return None
    if absorbed.status != ConsentStatus.OPTED_OUT and absorbed.since <= survivor.since:
        return None
    action = _CARRY_OVER.get(ConsentStatus(absorbed.status))
    if action is None or action in DECIDING_ACTIONS:
        return action
    before = ConsentStatus(survivor.before_pending) if survivor.before_pending else None
    status, _ = status_after(action, current, before)
    return action if status is not current else None


async def merge_consent_records(
    session: AsyncSession, *, keep_id: int, drop_id: int, now: datetime
) -> None:
    """Prepare consent states and conversations for folding contact ``drop_id`` into ``keep_id``.

    Runs in the merge's transaction before its rows are re-pointed. For each category both
    contacts have, the survivor keeps the more protective state, recorded as a ledger row in the
    survivor's chain with the absorbed chain's head as evidence; the absorbed contact's rows that
    would collide (those categories, and its conversation when the survivor has one) are
    deleted. Everything else, ledger rows included, is re-pointed by the merge; ledger rows keep
    their ``chain``, so both chains still verify.
    """
    await _lock_contacts(session, [keep_id, drop_id], share=False)
    states = await session.exec(
        select(ConsentState).where(col(ConsentState.contact_id).in_([keep_id, drop_id]))
    )
    kept: dict[str, ConsentState] = {}
    absorbed: list[ConsentState] = []
    for state in states.all():
        if state.contact_id == keep_id:
            kept[state.category] = state
        else:
            absorbed.append(state)
    absorbed_head = await session.get(LedgerHead, drop_id)
    head_hash = absorbed_head.hash if absorbed_head is not None else GENESIS_HASH
    changes: list[ConsentChange] = []
    for state in absorbed:
        survivor = kept.get(state.category)
        if survivor is None:
            continue
        action = _carried_action(survivor, state)
        decided_by = await session.get(ConsentEvent, state.last_event_id)
        if action is not None and decided_by is not None:
            changes.append(
                ConsentChange(
                    category=state.category,
                    action=action,
                    source=Source(state.source),
                    method=Method.CONTACT_MERGE,
                    evidence={
                        "merged_from_contact": drop_id,
                        "merged_chain_head": head_hash,
                        "merged_from_event": state.last_event_id,
                    },
                    business_name=decided_by.business_name,
                    policy_version=state.policy_version,
                    occurred_at=state.since,
                    event_key=f"merge:{drop_id}:{keep_id}:{state.category}:{state.last_event_id}",
                )
            )
    colliding = [state.category for state in absorbed if state.category in kept]
    if colliding:
        await session.exec(
            delete(ConsentState).where(
                col(ConsentState.contact_id) == drop_id,
                col(ConsentState.category).in_(colliding),
            )
        )
    if await session.get(Conversation, keep_id) is not None:
        await session.exec(delete(Conversation).where(col(Conversation.contact_id) == drop_id))
    if changes:
        await append_changes(session, keep_id, changes, now)
    await session.flush()

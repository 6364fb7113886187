"""Proving the consent ledger intact: recompute every chain and hold it against its head.

A row whose content was edited no longer matches its hash; evidence edited in place no longer
matches the digest the hash covers; a deleted row leaves a gap in ``seq``;
a row rewritten with a fresh hash breaks the next row's ``prev_hash``; deleted newest rows leave
the chain short of its head. Verification reads rows and heads in keyset-paginated batches, each
in its own short transaction, so it runs in constant memory on a ledger of any size without
holding up writers. Appends may go on meanwhile: whenever a chain does not end at the head read
for it, the head is read again and the rows up to it are fetched before judging, and since a
head is committed together with its rows, what is still missing then was deleted.

Erased evidence (``evidence_json`` NULL with ``erased_at`` set, see ``bot.erasure``) is not a
problem when the contact's erasure is on record (its ``withdrawn`` rows of method ``erasure``,
written no later than ``erased_at``): the row's hash covers the evidence's digest, which stays.
Such rows are counted; ``erased_at`` without an erasure record is evidence deleted by hand.

Beyond the chains themselves: every row of a chain belongs to one contact, the chain's own unless
that contact was merged away; every current state (``consent_states``) is the one the ledger's
rows project to (``status_after``, as ``bot.db.ledger_append`` folds them), so a status flipped in
SQL shows; and when the ledger is keyed (``bot.db.ledger_keys``) every row's and head's MAC must
verify under the key its ``key_id`` names. Rows written before the ledger was keyed are counted
as unkeyed; an unkeyed row or head after keyed rows of the same chain is a problem (keying
stripped). Every problem names the ledger row it concerns by id, chain and seq.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, func, or_
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from bot.db.consent_models import (
    GENESIS_HASH,
    ConsentEvent,
    ConsentState,
    LedgerHead,
)
from bot.db.ledger_append import DECIDING_ACTIONS
from bot.db.ledger_keys import LedgerKeys, head_mac, keys_of_engine, macs_equal, row_mac
from bot.db.models import Contact
from flows.consent import ConsentAction, ConsentStatus, Method, status_after

VERIFY_BATCH: Final = 1000
#: How often a state that disagrees with the ledger is read again before it is reported.
STATE_RECHECKS: Final = 3


class ProblemKind(StrEnum):
    """What is wrong with a chain."""

    HASH_MISMATCH = "hash_mismatch"  # a row's content was edited
    SEQ_GAP = "seq_gap"  # rows were deleted from the middle (or the start)
    PREV_HASH_MISMATCH = "prev_hash_mismatch"  # a row was rewritten with a recomputed hash
    HEAD_MISMATCH = "head_mismatch"  # the newest rows were deleted, or rows added behind its back
    EVIDENCE_MISMATCH = "evidence_mismatch"  # the evidence was edited: it no longer fits its digest
    EVIDENCE_MISSING = "evidence_missing"  # the evidence is gone but no erasure is recorded
    ERASURE_UNRECORDED = "erasure_unrecorded"  # erased_at set on a contact never erased
    MAC_MISMATCH = "mac_mismatch"  # a row or head rewritten without the ledger key
    KEY_MISSING = "key_missing"  # signed under a key id this verification was not given
    UNKEYED_AFTER_KEYED = "unkeyed_after_keyed"  # a MAC stripped from a keyed chain
    WRONG_CONTACT = "wrong_contact"  # a row moved to a contact its chain does not belong to
    STATE_MISMATCH = "state_mismatch"  # consent_states differs from the ledger's last decision


def decided_states_page(
    after: tuple[int, str] | None, batch: int, condition: ColumnElement[bool] | None = None
) -> Select[ConsentState, ConsentEvent]:
    """One page of current states with the ledger row that decided each, by (contact_id,
    category) after `after`, optionally filtered: read by `ledger verify` and by the
    projection's consumers alike."""
    statement = select(ConsentState, ConsentEvent).join(
        ConsentEvent, col(ConsentEvent.id) == col(ConsentState.last_event_id)
    )
    if condition is not None:
        statement = statement.where(condition)
    if after is not None:
        statement = statement.where(
            or_(
                col(ConsentState.contact_id) > after[0],
                and_(
                    col(ConsentState.contact_id) == after[0],
                    col(ConsentState.category) > after[1],
                ),
            )
        )
    return statement.order_by(col(ConsentState.contact_id), col(ConsentState.category)).limit(batch)


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """A problem found in one chain, at row ``seq`` (the ledger row ``row_id``).

    ``contact_id`` is the contact the chain's rows belong to now (None when no row is left).
    ``row_id`` is the row found broken (after a gap: the row following it; for a head: the
    chain's last row); None only when the chain has no row left.
    """

    chain: int
    contact_id: int | None
    seq: int
    kind: ProblemKind
    detail: str
    row_id: int | None = None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Outcome of a verification: how much was checked, and the problems (the first of each
    bad chain, and every state or erasure that does not match the ledger).

    ``rows_erased`` counts the rows checked whose evidence was erased with their contact's
    personal data (their hashes still verify; only the evidence text is gone).
    """

    chains_checked: int
    rows_checked: int
    problems: list[ChainProblem] = field(default_factory=list)
    rows_erased: int = 0
    #: Rows written before the ledger was keyed: chained, but without a MAC.
    rows_unkeyed: int = 0
    #: The key ids the checked rows were signed under.
    key_ids: tuple[str, ...] = ()
    states_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class _ErasedRow:
    row_id: int
    contact_id: int
    chain: int
    seq: int
    erased_at: Any


class _ChainWalk:
    """Follows one chain row by row in ``seq`` order and keeps its first problem."""

    __slots__ = (
        "chain",
        "contact_id",
        "erased",
        "erased_rows",
        "first_id",
        "key_ids",
        "keyed",
        "keys",
        "last_hash",
        "last_id",
        "last_seq",
        "problem",
        "unkeyed",
    )

    def __init__(self, chain: int, keys: LedgerKeys) -> None:
        self.chain = chain
        self.keys = keys
        self.contact_id: int | None = None
        self.erased = 0
        self.erased_rows: list[_ErasedRow] = []
        self.unkeyed = 0
        self.keyed = False
        self.key_ids: set[str] = set()
        self.first_id: int | None = None
        self.last_id: int | None = None
        self.last_seq = 0
        self.last_hash = GENESIS_HASH
        self.problem: ChainProblem | None = None

    def _fail(self, seq: int, kind: ProblemKind, detail: str, row_id: int | None) -> None:
        self.problem = ChainProblem(self.chain, self.contact_id, seq, kind, detail, row_id)

    def _key_problem(self, row: ConsentEvent) -> tuple[ProblemKind, str] | None:
        """Check the row's MAC (or its absence) under the key it names."""
        if row.key_id is None:
            self.unkeyed += 1
            if self.keyed:
                return ProblemKind.UNKEYED_AFTER_KEYED, "unkeyed row after keyed rows"
            return None
        self.keyed = True
        self.key_ids.add(row.key_id)
        key = self.keys.keys.get(row.key_id)
        if key is None:
            return ProblemKind.KEY_MISSING, f"signed under key id {row.key_id!r}, not given"
        if not macs_equal(row_mac(key, row.hash), row.mac):
            return ProblemKind.MAC_MISMATCH, f"the row's MAC does not verify (key {row.key_id!r})"
        return None

    def _check(self, row: ConsentEvent) -> tuple[ProblemKind, str] | None:
        if row.prev_hash != self.last_hash:
            detail = f"prev_hash does not match the hash of row {self.last_seq}"
            return ProblemKind.PREV_HASH_MISMATCH, detail
        if row.expected_hash() != row.hash:
            return ProblemKind.HASH_MISMATCH, "the row's content does not match its hash"
        key_problem = self._key_problem(row)
        if key_problem is not None:
            return key_problem
        if not row.evidence_intact():
            detail = "the evidence does not match the digest the row's hash covers"
            return ProblemKind.EVIDENCE_MISMATCH, detail
        if row.evidence_json is None and row.erased_at is None:
            return ProblemKind.EVIDENCE_MISSING, "the evidence is gone without an erasure"
        if row.contact_id != self.contact_id:
            detail = f"the row belongs to contact {row.contact_id}, its chain's rows to another"
            return ProblemKind.WRONG_CONTACT, detail
        return None

    def feed(self, row: ConsentEvent) -> None:
        if row.evidence_json is None and row.erased_at is not None:
            self.erased += 1
        if row.erased_at is not None and row.id is not None:
            self.erased_rows.append(
                _ErasedRow(row.id, row.contact_id, row.chain, row.seq, row.erased_at)
            )
        if self.problem is not None:
            return
        if self.contact_id is None:
            self.contact_id = row.contact_id
            self.first_id = row.id
        expected = self.last_seq + 1
        if row.seq != expected:
            detail = f"rows {expected}..{row.seq - 1} are missing (before row id {row.id})"
            self._fail(expected, ProblemKind.SEQ_GAP, detail, row.id)
        else:
            found = self._check(row)
            if found is not None:
                self._fail(row.seq, found[0], found[1], row.id)
        self.last_seq = row.seq
        self.last_hash = row.hash
        self.last_id = row.id

    def ends_at(self, head: LedgerHead | None) -> bool:
        if head is None:
            return self.last_seq == 0
        return (head.seq, head.hash) == (self.last_seq, self.last_hash)

    def _head_key_problem(self, head: LedgerHead) -> str | None:
        if head.seq == 0:
            return None
        if head.key_id is None:
            return "the head carries no MAC though its rows do" if self.keyed else None
        key = self.keys.keys.get(head.key_id)
        if key is None:
            self._fail(
                head.seq,
                ProblemKind.KEY_MISSING,
                f"the head is signed under key id {head.key_id!r}, not given",
                self.last_id,
            )
            return None
        if not macs_equal(head_mac(key, head.chain, head.seq, head.hash), head.mac):
            return f"the head's MAC does not verify (key {head.key_id!r}): it was moved"
        return None

    def finish(self, head: LedgerHead | None) -> ChainProblem | None:
        if self.problem is not None:
            return self.problem
        if self.ends_at(head):
            if head is not None:
                detail = self._head_key_problem(head)
                if detail is not None:
                    self._fail(head.seq, ProblemKind.HEAD_MISMATCH, detail, self.last_id)
            return self.problem
        if head is None:
            detail = f"rows go up to {self.last_seq} but the chain has no head"
            self._fail(self.last_seq, ProblemKind.HEAD_MISMATCH, detail, self.last_id)
        elif head.seq > self.last_seq:
            detail = f"the head is at row {head.seq} but the rows end at {self.last_seq}"
            self._fail(self.last_seq + 1, ProblemKind.HEAD_MISMATCH, detail, self.last_id)
        elif head.seq < self.last_seq:
            detail = f"rows go on to {self.last_seq}, past the head at {head.seq}"
            self._fail(head.seq + 1, ProblemKind.HEAD_MISMATCH, detail, self.last_id)
        else:
            detail = f"the head's hash is not the hash of row {head.seq}"
            self._fail(head.seq, ProblemKind.HEAD_MISMATCH, detail, self.last_id)
        return self.problem


@dataclass(slots=True)
class _Replayed:
    """A state as the rows of one chain project it."""

    status: ConsentStatus
    before_pending: ConsentStatus | None
    last_event_id: int


def _replay(rows: Sequence[tuple[int, int, str, str]]) -> dict[tuple[int, str], _Replayed]:
    """Fold (id, chain, category, action) rows, by (chain, seq), into their states, exactly as
    ``bot.db.ledger_append._project`` does (an ``overruled`` row changes nothing)."""
    states: dict[tuple[int, str], _Replayed] = {}
    for row_id, chain, category, action_name in rows:
        action = ConsentAction(action_name)
        state = states.get((chain, category))
        current = state.status if state is not None else ConsentStatus.NONE
        before = state.before_pending if state is not None else None
        status, before_pending = status_after(action, current, before)
        deciding = action in DECIDING_ACTIONS or status is not current
        if not deciding and (state is None or before_pending == before):
            continue
        if state is None:
            state = states[(chain, category)] = _Replayed(status, before_pending, row_id)
        if deciding:
            state.last_event_id = row_id
        state.status, state.before_pending = status, before_pending
    return states


def _states_of(keys: Mapping[tuple[int, str], object]) -> Any:
    """The states of these (contact, category) pairs, each with the row it names."""
    return (
        select(ConsentState, ConsentEvent)
        .join(ConsentEvent, col(ConsentEvent.id) == col(ConsentState.last_event_id))
        .where(
            or_(
                *(
                    and_(col(ConsentState.contact_id) == contact, col(ConsentState.category) == cat)
                    for contact, cat in keys
                )
            )
        )
    )


class _Verifier:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        chains: Sequence[int] | None,
        batch: int,
        keys: LedgerKeys,
        contact_id: int | None = None,
    ) -> None:
        self._sessions = sessions
        self._chains = chains
        self._batch = batch
        self._keys = keys
        self._contact_id = contact_id
        self.chains_checked = 0
        self.rows_checked = 0
        self.rows_erased = 0
        self.rows_unkeyed = 0
        self.states_checked = 0
        self.key_ids: set[str] = set()
        self.problems: list[ChainProblem] = []
        self._erased: list[_ErasedRow] = []
        self._foreign: dict[int, ChainProblem] = {}

    async def _fetch(self, statement: Any) -> list[Any]:
        async with self._sessions() as session:
            return list((await session.exec(statement)).all())

    async def _rows(
        self, chain: int | None = None, *, after_seq: int = 0, upto: int | None = None
    ) -> AsyncIterator[ConsentEvent]:
        """Ledger rows by (chain, seq): of the chains being verified, or of ``chain`` only."""
        after: tuple[int, int] | None = (chain, after_seq) if chain is not None else None
        while True:
            statement = select(ConsentEvent)
            if chain is not None:
                statement = statement.where(col(ConsentEvent.chain) == chain)
            elif self._chains is not None:
                statement = statement.where(col(ConsentEvent.chain).in_(self._chains))
            if upto is not None:
                statement = statement.where(col(ConsentEvent.seq) <= upto)
            if after is not None:
                statement = statement.where(
                    or_(
                        col(ConsentEvent.chain) > after[0],
                        and_(col(ConsentEvent.chain) == after[0], col(ConsentEvent.seq) > after[1]),
                    )
                )
            statement = statement.order_by(col(ConsentEvent.chain), col(ConsentEvent.seq))
            rows: list[ConsentEvent] = await self._fetch(statement.limit(self._batch))
            for row in rows:
                yield row
            if len(rows) < self._batch:
                return
            after = (rows[-1].chain, rows[-1].seq)

    async def _heads(self) -> AsyncIterator[LedgerHead]:
        after: int | None = None
        while True:
            statement = select(LedgerHead)
            if self._chains is not None:
                statement = statement.where(col(LedgerHead.chain).in_(self._chains))
            if after is not None:
                statement = statement.where(col(LedgerHead.chain) > after)
            statement = statement.order_by(col(LedgerHead.chain)).limit(self._batch)
            heads: list[LedgerHead] = await self._fetch(statement)
            for head in heads:
                yield head
            if len(heads) < self._batch:
                return
            after = heads[-1].chain

    async def _settle(self, walk: _ChainWalk, head: LedgerHead | None) -> None:
        """Judge a chain whose rows have all been fed, against ``head``."""
        if walk.problem is None and not walk.ends_at(head):
            # Appended to since these rows or this head were read: read the head again, then
            # the rows up to it (committed with it, so visible now unless deleted).
            head = (
                await self._fetch(select(LedgerHead).where(col(LedgerHead.chain) == walk.chain))
                or [None]
            )[0]
            if head is not None and head.seq > walk.last_seq:
                async for row in self._rows(walk.chain, after_seq=walk.last_seq, upto=head.seq):
                    self.rows_checked += 1
                    walk.feed(row)
        problem = walk.finish(head)
        self.chains_checked += 1
        self.rows_erased += walk.erased
        self.rows_unkeyed += walk.unkeyed
        self.key_ids |= walk.key_ids
        if problem is not None:
            self.problems.append(problem)
        elif walk.contact_id is not None and walk.contact_id != walk.chain:
            # Rows of a merged-away contact's chain: fine unless that contact still exists.
            self._foreign[walk.chain] = ChainProblem(
                walk.chain,
                walk.contact_id,
                1,
                ProblemKind.WRONG_CONTACT,
                f"the chain's rows belong to contact {walk.contact_id}, but contact "
                f"{walk.chain}, whose chain it is, still exists",
                walk.first_id,
            )
        self._erased.extend(walk.erased_rows)
        if len(self._erased) >= self._batch or len(self._foreign) >= self._batch:
            await self._check_pending()

    async def _check_pending(self) -> None:
        """Erased rows need their contact's erasure on record; a chain's rows may belong to
        another contact only once the chain's own contact was merged away."""
        erased, self._erased = self._erased, []
        foreign, self._foreign = self._foreign, {}
        if erased:
            contacts = sorted({row.contact_id for row in erased})
            recorded = dict(
                await self._fetch(
                    select(ConsentEvent.contact_id, func.min(ConsentEvent.recorded_at))
                    .where(
                        col(ConsentEvent.contact_id).in_(contacts),
                        col(ConsentEvent.method) == Method.ERASURE.value,
                    )
                    .group_by(col(ConsentEvent.contact_id))
                )
            )
            for row in erased:
                since = recorded.get(row.contact_id)
                if since is None or since > row.erased_at:
                    self.problems.append(
                        ChainProblem(
                            row.chain,
                            row.contact_id,
                            row.seq,
                            ProblemKind.ERASURE_UNRECORDED,
                            f"erased_at is set but contact {row.contact_id} has no erasure "
                            "on record before it",
                            row.row_id,
                        )
                    )
        if foreign:
            alive = await self._fetch(
                select(Contact.id).where(col(Contact.id).in_(sorted(foreign)))
            )
            self.problems.extend(foreign[chain] for chain in sorted(alive))

    async def _check_states(self) -> None:
        """Hold every current state (of the contact being verified) against the ledger: the row
        it names must be the last decision of its chain for that category, with that status."""
        after: tuple[int, str] | None = None
        while True:
            statement = decided_states_page(
                after,
                self._batch,
                None
                if self._contact_id is None
                else col(ConsentState.contact_id) == self._contact_id,
            )
            pairs: list[tuple[ConsentState, ConsentEvent]] = await self._fetch(statement)
            self.states_checked += len(pairs)
            problems = await self._state_problems(pairs)
            for _ in range(STATE_RECHECKS):
                if not problems:
                    break
                # An append committed between reading the states and reading the rows: read
                # the states that disagree again; one edited by hand disagrees every time.
                problems = await self._state_problems(await self._fetch(_states_of(problems)))
            self.problems.extend(problems.values())
            if len(pairs) < self._batch:
                return
            after = (pairs[-1][0].contact_id, pairs[-1][0].category)

    async def _state_problems(
        self, pairs: Sequence[tuple[ConsentState, ConsentEvent]]
    ) -> dict[tuple[int, str], ChainProblem]:
        """The states among ``pairs`` that the rows of their chains do not project to."""
        problems: dict[tuple[int, str], ChainProblem] = {}
        if not pairs:
            return problems
        chains = sorted({event.chain for _, event in pairs})
        categories = sorted({state.category for state, _ in pairs})
        rows = await self._fetch(
            select(ConsentEvent.id, ConsentEvent.chain, ConsentEvent.category, ConsentEvent.action)
            .where(col(ConsentEvent.chain).in_(chains), col(ConsentEvent.category).in_(categories))
            .order_by(col(ConsentEvent.chain), col(ConsentEvent.seq))
        )
        replayed = _replay(rows)
        for state, event in pairs:
            expected = replayed.get((event.chain, state.category))
            if event.contact_id != state.contact_id or event.category != state.category:
                detail = (
                    f"the state of {state.category} names row {event.id}, a row of contact "
                    f"{event.contact_id} for {event.category}"
                )
            elif expected is None or expected.last_event_id != event.id:
                detail = (
                    f"the state of {state.category} names row {event.id}, not the ledger's "
                    f"last decision"
                    + (f" (row {expected.last_event_id})" if expected is not None else "")
                )
            elif expected.status.value != state.status:
                detail = (
                    f"the state of {state.category} says {state.status}, the ledger's last "
                    f"decision says {expected.status.value}"
                )
            else:
                continue
            problems[(state.contact_id, state.category)] = ChainProblem(
                event.chain,
                state.contact_id,
                event.seq,
                ProblemKind.STATE_MISMATCH,
                detail,
                event.id,
            )
        return problems

    async def _heads_up_to(
        self, heads: AsyncIterator[LedgerHead], head: LedgerHead | None, walk: _ChainWalk
    ) -> LedgerHead | None:
        """Settle ``walk`` with its head, and chains that have a head but no rows before it."""
        while head is not None and head.chain < walk.chain:
            await self._settle(_ChainWalk(head.chain, self._keys), head)
            head = await anext(heads, None)
        if head is not None and head.chain == walk.chain:
            await self._settle(walk, head)
            return await anext(heads, None)
        await self._settle(walk, None)
        return head

    async def run(self) -> VerifyReport:
        heads = self._heads()
        head = await anext(heads, None)
        walk: _ChainWalk | None = None
        async for row in self._rows():
            if walk is None or row.chain != walk.chain:
                if walk is not None:
                    head = await self._heads_up_to(heads, head, walk)
                walk = _ChainWalk(row.chain, self._keys)
            self.rows_checked += 1
            walk.feed(row)
        if walk is not None:
            head = await self._heads_up_to(heads, head, walk)
        while head is not None:
            await self._settle(_ChainWalk(head.chain, self._keys), head)
            head = await anext(heads, None)
        await self._check_pending()
        await self._check_states()
        return VerifyReport(
            self.chains_checked,
            self.rows_checked,
            self.problems,
            rows_erased=self.rows_erased,
            rows_unkeyed=self.rows_unkeyed,
            key_ids=tuple(sorted(self.key_ids)),
            states_checked=self.states_checked,
        )


async def _chains_of(sessions: async_sessionmaker[AsyncSession], contact_id: int) -> list[int]:
    """The contact's own chain and the chains of contacts merged into it."""
    async with sessions() as session:
        merged = await session.exec(
            select(ConsentEvent.chain).where(col(ConsentEvent.contact_id) == contact_id).distinct()
        )
        chains = set(merged.all())
        if await session.get(LedgerHead, contact_id) is not None:
            chains.add(contact_id)
    return sorted(chains)


async def verify_chains(
    sessions: async_sessionmaker[AsyncSession],
    contact_id: int | None = None,
    *,
    batch: int = VERIFY_BATCH,
    keys: LedgerKeys | None = None,
) -> VerifyReport:
    """Verify the chains and states of ``contact_id``, or the whole ledger when it is None.

    ``keys`` defaults to those attached to the sessions' engine (``bot.db.ledger_keys``).
    """
    if keys is None:
        bind = sessions.kw.get("bind")
        keys = keys_of_engine(bind) if isinstance(bind, AsyncEngine) else LedgerKeys()
    chains = None if contact_id is None else await _chains_of(sessions, contact_id)
    return await _Verifier(sessions, chains, batch, keys, contact_id).run()

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
problem: the row's hash covers the evidence's digest, which stays. Such rows are counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import and_, or_
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.consent_models import GENESIS_HASH, ConsentEvent, LedgerHead

VERIFY_BATCH: Final = 1000


class ProblemKind(StrEnum):
    """What is wrong with a chain."""

    HASH_MISMATCH = "hash_mismatch"  # a row's content was edited
    SEQ_GAP = "seq_gap"  # rows were deleted from the middle (or the start)
    PREV_HASH_MISMATCH = "prev_hash_mismatch"  # a row was rewritten with a recomputed hash
    HEAD_MISMATCH = "head_mismatch"  # the newest rows were deleted, or rows added behind its back
    EVIDENCE_MISMATCH = "evidence_mismatch"  # the evidence was edited: it no longer fits its digest
    EVIDENCE_MISSING = "evidence_missing"  # the evidence is gone but no erasure is recorded


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first problem found in one chain, at row ``seq``.

    ``contact_id`` is the contact the chain's rows belong to now (None when no row is left).
    """

    chain: int
    contact_id: int | None
    seq: int
    kind: ProblemKind
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Outcome of a verification: how much was checked, and the problems (one per bad chain).

    ``rows_erased`` counts the rows checked whose evidence was erased with their contact's
    personal data (their hashes still verify; only the evidence text is gone).
    """

    chains_checked: int
    rows_checked: int
    problems: list[ChainProblem] = field(default_factory=list)
    rows_erased: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class _ChainWalk:
    """Follows one chain row by row in ``seq`` order and keeps its first problem."""

    __slots__ = ("chain", "contact_id", "erased", "last_hash", "last_seq", "problem")

    def __init__(self, chain: int) -> None:
        self.chain = chain
        self.contact_id: int | None = None
        self.erased = 0
        self.last_seq = 0
        self.last_hash = GENESIS_HASH
        self.problem: ChainProblem | None = None

    def _fail(self, seq: int, kind: ProblemKind, detail: str) -> None:
        self.problem = ChainProblem(self.chain, self.contact_id, seq, kind, detail)

    def feed(self, row: ConsentEvent) -> None:
        if row.evidence_json is None and row.erased_at is not None:
            self.erased += 1
        if self.problem is not None:
            return
        self.contact_id = row.contact_id
        expected = self.last_seq + 1
        if row.seq != expected:
            self._fail(expected, ProblemKind.SEQ_GAP, f"rows {expected}..{row.seq - 1} are missing")
        elif row.prev_hash != self.last_hash:
            self._fail(
                row.seq,
                ProblemKind.PREV_HASH_MISMATCH,
                f"prev_hash does not match the hash of row {self.last_seq}",
            )
        elif row.expected_hash() != row.hash:
            self._fail(
                row.seq, ProblemKind.HASH_MISMATCH, "the row's content does not match its hash"
            )
        elif not row.evidence_intact():
            self._fail(
                row.seq,
                ProblemKind.EVIDENCE_MISMATCH,
                "the evidence does not match the digest the row's hash covers",
            )
        elif row.evidence_json is None and row.erased_at is None:
            self._fail(
                row.seq, ProblemKind.EVIDENCE_MISSING, "the evidence is gone without an erasure"
            )
        self.last_seq = row.seq
        self.last_hash = row.hash

    def ends_at(self, head: LedgerHead | None) -> bool:
        if head is None:
            return self.last_seq == 0
        return (head.seq, head.hash) == (self.last_seq, self.last_hash)

    def finish(self, head: LedgerHead | None) -> ChainProblem | None:
        if self.problem is not None or self.ends_at(head):
            return self.problem
        if head is None:
            detail = f"rows go up to {self.last_seq} but the chain has no head"
            self._fail(self.last_seq, ProblemKind.HEAD_MISMATCH, detail)
        elif head.seq > self.last_seq:
            detail = f"the head is at row {head.seq} but the rows end at {self.last_seq}"
            self._fail(self.last_seq + 1, ProblemKind.HEAD_MISMATCH, detail)
        elif head.seq < self.last_seq:
            detail = f"rows go on to {self.last_seq}, past the head at {head.seq}"
            self._fail(head.seq + 1, ProblemKind.HEAD_MISMATCH, detail)
        else:
            detail = f"the head's hash is not the hash of row {head.seq}"
            self._fail(head.seq, ProblemKind.HEAD_MISMATCH, detail)
        return self.problem


class _Verifier:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        chains: Sequence[int] | None,
        batch: int,
    ) -> None:
        self._sessions = sessions
        self._chains = chains
        self._batch = batch
        self.chains_checked = 0
        self.rows_checked = 0
        self.rows_erased = 0
        self.problems: list[ChainProblem] = []

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
        if problem is not None:
            self.problems.append(problem)

    async def _heads_up_to(
        self, heads: AsyncIterator[LedgerHead], head: LedgerHead | None, walk: _ChainWalk
    ) -> LedgerHead | None:
        """Settle ``walk`` with its head, and chains that have a head but no rows before it."""
        while head is not None and head.chain < walk.chain:
            await self._settle(_ChainWalk(head.chain), head)
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
                walk = _ChainWalk(row.chain)
            self.rows_checked += 1
            walk.feed(row)
        if walk is not None:
            head = await self._heads_up_to(heads, head, walk)
        while head is not None:
            await self._settle(_ChainWalk(head.chain), head)
            head = await anext(heads, None)
        return VerifyReport(
            self.chains_checked, self.rows_checked, self.problems, rows_erased=self.rows_erased
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
) -> VerifyReport:
    """Verify the chains of ``contact_id``, or every chain in the ledger when it is None."""
    chains = None if contact_id is None else await _chains_of(sessions, contact_id)
    return await _Verifier(sessions, chains, batch).run()

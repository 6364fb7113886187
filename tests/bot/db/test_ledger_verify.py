"""Verification of the ledger's hash chains: every kind of tampering is found, and only that."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.consent_models import ConsentEvent, event_hash, sha256_hex
from bot.db.contacts import ContactRepository
from bot.db.erasure import ErasureRequest, erase_records
from bot.db.ledger import ConsentChange, LedgerRepository, ProblemKind, VerifyReport
from bot.db.ledger_verify import verify_chains
from bot.db.pseudonyms import Pseudonymiser
from flows.consent import ConsentAction, Method, Source

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PSEUDONYMS = Pseudonymiser(b"a test pseudonym key of 32 bytes")

#: One chain of four rows; the state of "marketing" points at row 3, so rows 1, 2 and 4 can be
#: deleted without touching the projection (an attacker would simply delete that too).
SCRIPT = (
    ConsentAction.GRANTED,
    ConsentAction.WITHDRAWN,
    ConsentAction.GRANTED,
    ConsentAction.PENDING,  # while opted in: recorded, changes nothing
)


def change(action: ConsentAction, key: str, at: datetime = T0) -> ConsentChange:
    return ConsentChange(
        category="marketing",
        action=action,
        source=Source.WEBSITE,
        method=Method.API_RECORD,
        evidence={"ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "wording": "Send me offers"},
        business_name="Example Business",
        policy_version=None,
        occurred_at=at,
        event_key=key,
    )


async def new_chain(
    contacts: ContactRepository, ledger: LedgerRepository, wa_id: str
) -> tuple[int, list[ConsentEvent]]:
    contact = await contacts.resolve(wa_id=wa_id, user_id=None)
    assert contact.id is not None
    rows = await ledger.apply(
        contact.id,
        [
            change(action, f"{wa_id}-{n}", T0 + timedelta(minutes=n))
            for n, action in enumerate(SCRIPT)
        ],
    )
    return contact.id, rows


@pytest.fixture
async def chains(
    contacts: ContactRepository, ledger: LedgerRepository
) -> list[tuple[int, list[ConsentEvent]]]:
    """Three contacts with a four-row chain each."""
    return [await new_chain(contacts, ledger, f"1555000000{n}") for n in range(3)]


async def tamper(engine: AsyncEngine, statement: str, **params: object) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(statement), params)


async def erase(sessions: async_sessionmaker[AsyncSession], contact_id: int) -> None:
    request = ErasureRequest(
        contact_id=contact_id,
        erasure_id="erasure-1",
        categories=("marketing",),
        business_name="Example Business",
        requested_via="api",
        now=T0 + timedelta(days=1),
    )
    async with sessions() as session:
        assert await erase_records(session, request, PSEUDONYMS) is not None
        await session.commit()


def only_problem(report: VerifyReport) -> tuple[int, int | None, int, ProblemKind]:
    assert not report.ok and len(report.problems) == 1
    problem = report.problems[0]
    assert problem.detail
    return problem.chain, problem.contact_id, problem.seq, problem.kind


async def test_an_untouched_ledger_verifies(
    ledger: LedgerRepository, chains: list[tuple[int, list[ConsentEvent]]]
) -> None:
    everything = await ledger.verify()
    one = await ledger.verify(chains[1][0])

    assert everything.ok and (everything.chains_checked, everything.rows_checked) == (3, 12)
    assert one.ok and (one.chains_checked, one.rows_checked) == (1, 4)
    assert (await ledger.verify(chains[0][0] + 1000)).chains_checked == 0


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("category", "reminders"),
        ("occurred_at", datetime(2020, 1, 1)),
        ("evidence_digest", "0" * 64),
        ("event_key", "another-key"),
    ],
)
async def test_an_edited_row_is_found(
    engine: AsyncEngine,
    ledger: LedgerRepository,
    chains: list[tuple[int, list[ConsentEvent]]],
    column: str,
    value: object,
) -> None:
    contact_id, rows = chains[1]
    await tamper(
        engine,
        f"UPDATE consent_events SET {column} = :value WHERE id = :id",
        value=value,
        id=rows[1].id,
    )

    assert only_problem(await ledger.verify()) == (
        contact_id,
        contact_id,
        2,
        ProblemKind.HASH_MISMATCH,
    )
    assert only_problem(await ledger.verify(contact_id))[3] is ProblemKind.HASH_MISMATCH
    assert (await ledger.verify(chains[0][0])).ok


async def test_edited_evidence_no_longer_matches_its_digest(
    engine: AsyncEngine,
    ledger: LedgerRepository,
    chains: list[tuple[int, list[ConsentEvent]]],
) -> None:
    contact_id, rows = chains[1]
    await tamper(
        engine,
        "UPDATE consent_events SET evidence_json = :evidence WHERE id = :id",
        evidence='{"ip":"198.51.100.1"}',
        id=rows[1].id,
    )

    assert only_problem(await ledger.verify()) == (
        contact_id,
        contact_id,
        2,
        ProblemKind.EVIDENCE_MISMATCH,
    )


async def test_evidence_and_digest_edited_together_break_the_hash(
    engine: AsyncEngine,
    ledger: LedgerRepository,
    chains: list[tuple[int, list[ConsentEvent]]],
) -> None:
    contact_id, rows = chains[0]
    forged = '{"ip":"198.51.100.1"}'
    await tamper(
        engine,
        "UPDATE consent_events SET evidence_json = :evidence, evidence_digest = :digest "
        "WHERE id = :id",
        evidence=forged,
        digest=sha256_hex(forged),
        id=rows[2].id,
    )

    assert only_problem(await ledger.verify()) == (
        contact_id,
        contact_id,
        3,
        ProblemKind.HASH_MISMATCH,
    )


async def test_erased_evidence_still_verifies_and_is_counted(
    ledger: LedgerRepository,
    sessions: async_sessionmaker[AsyncSession],
    chains: list[tuple[int, list[ConsentEvent]]],
) -> None:
    """A real erasure (its ``withdrawn`` row on record, then the evidence dropped) verifies."""
    contact_id, _ = chains[2]
    await erase(sessions, contact_id)

    everything = await ledger.verify()
    one = await ledger.verify(contact_id)

    assert everything.ok and (everything.rows_checked, everything.rows_erased) == (13, 4)
    assert one.ok and (one.rows_checked, one.rows_erased) == (5, 4)


async def test_evidence_removed_without_an_erasure_is_reported(
    engine: AsyncEngine,
    ledger: LedgerRepository,
    chains: list[tuple[int, list[ConsentEvent]]],
) -> None:
    contact_id, rows = chains[0]
    await tamper(
        engine, "UPDATE consent_events SET evidence_json = NULL WHERE id = :id", id=rows[0].id
    )

    assert only_problem(await ledger.verify()) == (
        contact_id,
        contact_id,
        1,
        ProblemKind.EVIDENCE_MISSING,
    )


async def test_a_replayed_key_writes_nothing_after_its_row_was_erased(
    ledger: LedgerRepository,
    sessions: async_sessionmaker[AsyncSession],
    chains: list[tuple[int, list[ConsentEvent]]],
) -> None:
    contact_id, rows = chains[1]
    await erase(sessions, contact_id)

    assert await ledger.apply(contact_id, [change(ConsentAction.GRANTED, rows[0].event_key)]) == []
    with pytest.raises(ValueError, match="erased"):
        await ledger.apply(contact_id, [change(ConsentAction.GRANTED, "erased:abc")])
    assert (await ledger.verify()).ok


async def test_a_row_rewritten_with_a_fresh_hash_breaks_the_next_link(
    engine: AsyncEngine,
    ledger: LedgerRepository,
    chains: list[tuple[int, list[ConsentEvent]]],
) -> None:
    contact_id, rows = chains[0]
    forged = rows[1].model_dump()
    forged["action"] = "granted"
    await tamper(
        engine,
        "UPDATE consent_events SET action = 'granted', hash = :hash WHERE id = :id",
        hash=event_hash(forged),
        id=rows[1].id,
    )

    assert only_problem(await ledger.verify()) == (
        contact_id,
        contact_id,
        3,
        ProblemKind.PREV_HASH_MISMATCH,
    )


@pytest.mark.parametrize(("deleted", "kind"), [(2, ProblemKind.SEQ_GAP), (1, ProblemKind.SEQ_GAP)])
async def test_a_deleted_row_leaves_a_gap(
    engine: AsyncEngine,
    ledger: LedgerRepository,
    chains: list[tuple[int, list[ConsentEvent]]],
    deleted: int,
    kind: ProblemKind,
) -> None:
    contact_id, rows = chains[2]
    await tamper(engine, "DELETE FROM consent_events WHERE id = :id", id=rows[deleted - 1].id)

    assert only_problem(await ledger.verify())[::2] == (contact_id, deleted)
    assert only_problem(await ledger.verify(contact_id))[2:] == (deleted, kind)


async def test_deleting_the_newest_row_is_found_through_the_head(
    engine: AsyncEngine,
    ledger: LedgerRepository,
    chains: list[tuple[int, list[ConsentEvent]]],
) -> None:
    contact_id, rows = chains[1]
    await tamper(engine, "DELETE FROM consent_events WHERE id = :id", id=rows[3].id)

    assert only_problem(await ledger.verify()) == (
        contact_id,
        contact_id,
        4,
        ProblemKind.HEAD_MISMATCH,
    )
    assert only_problem(await ledger.verify(contact_id))[3] is ProblemKind.HEAD_MISMATCH


async def test_a_deleted_chain_or_head_and_a_forged_head_are_found(
    engine: AsyncEngine,
    ledger: LedgerRepository,
    chains: list[tuple[int, list[ConsentEvent]]],
) -> None:
    (wiped, _), (headless, _), (forged, _) = chains
    await tamper(engine, "DELETE FROM consent_states WHERE contact_id = :c", c=wiped)
    await tamper(engine, "DELETE FROM consent_events WHERE contact_id = :c", c=wiped)
    await tamper(engine, "DELETE FROM ledger_heads WHERE chain = :c", c=headless)
    await tamper(engine, "UPDATE ledger_heads SET hash = :h WHERE chain = :c", h="f" * 64, c=forged)

    report = await ledger.verify()

    assert report.chains_checked == 3 and report.rows_checked == 8
    assert sorted((p.chain, p.seq, p.kind) for p in report.problems) == sorted(
        [
            (wiped, 1, ProblemKind.HEAD_MISMATCH),
            (headless, 4, ProblemKind.HEAD_MISMATCH),
            (forged, 4, ProblemKind.HEAD_MISMATCH),
        ]
    )


async def test_small_batches_find_the_same_problems(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    chains: list[tuple[int, list[ConsentEvent]]],
) -> None:
    contact_id, rows = chains[1]
    await tamper(engine, "DELETE FROM consent_events WHERE id = :id", id=rows[3].id)

    for batch in (1, 2, 3, 5):
        report = await verify_chains(sessions, batch=batch)
        assert (report.chains_checked, report.rows_checked) == (3, 11)
        assert only_problem(report) == (contact_id, contact_id, 4, ProblemKind.HEAD_MISMATCH)


async def test_appends_during_verification_are_not_mistaken_for_tampering(
    contacts: ContactRepository,
    ledger: LedgerRepository,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    contact_id, _ = await new_chain(contacts, ledger, "15550000009")

    async def append(n: int) -> None:
        await ledger.apply(contact_id, [change(ConsentAction.RECONFIRMED, f"more-{n}")])

    async def verify() -> list[VerifyReport]:
        return [await verify_chains(sessions, batch=1) for _ in range(5)]

    verifying = asyncio.create_task(verify())
    await asyncio.gather(*(append(n) for n in range(15)))
    reports = await verifying

    assert all(report.ok for report in reports)
    final = await ledger.verify()
    assert final.ok and final.rows_checked == 4 + 15

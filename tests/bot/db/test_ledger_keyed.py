"""The keyed ledger and the deeper verification: edits made directly in SQL that used to pass
``ledger verify`` (evidence "erased" by hand, a row moved to another contact, a consent state
flipped, the tail deleted and the head moved back) are found and name the row; rows signed under
rotated keys verify with those keys; unkeyed rows from before the key still verify as unkeyed."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.consent_models import ConsentEvent, event_hash
from bot.db.contacts import ContactRepository
from bot.db.ledger import LedgerRepository, ProblemKind, VerifyReport
from bot.db.ledger_keys import LedgerKeys, attach_keys
from bot.db.ledger_verify import verify_chains
from flows.consent import ConsentAction, Source
from tests.bot.db.test_ledger_verify import T0, change, erase, new_chain, tamper

KEY_1 = b"the first ledger key, 32 bytes.."
KEY_2 = b"the second ledger key, 32 bytes."
SIGN_1 = LedgerKeys("1", {"1": KEY_1})
SIGN_2 = LedgerKeys("2", {"1": KEY_1, "2": KEY_2})


@pytest.fixture
def keyed(engine: AsyncEngine) -> None:
    attach_keys(engine, SIGN_1)


@pytest.fixture
async def pair(
    keyed: None, contacts: ContactRepository, ledger: LedgerRepository
) -> list[tuple[int, list[ConsentEvent]]]:
    """Two contacts with a four-row chain each, signed under key 1 (the state of "marketing"
    names row 3: granted; row 4 is a pending request that changes nothing)."""
    return [await new_chain(contacts, ledger, f"1555200000{n}") for n in range(2)]


def found(report: VerifyReport) -> list[tuple[ProblemKind, int | None]]:
    assert all(problem.detail for problem in report.problems)
    return [(problem.kind, problem.row_id) for problem in report.problems]


async def both(ledger: LedgerRepository, contact_id: int) -> list[VerifyReport]:
    return [await ledger.verify(), await ledger.verify(contact_id)]


async def test_a_keyed_ledger_verifies_and_names_its_key(
    ledger: LedgerRepository, pair: list[tuple[int, list[ConsentEvent]]]
) -> None:
    report = await ledger.verify()
    assert report.ok and report.rows_checked == 8 and report.states_checked == 2
    assert (report.rows_unkeyed, report.key_ids) == (0, ("1",))
    assert all(row.key_id == "1" and row.mac for _, rows in pair for row in rows)


async def test_erased_at_set_by_hand_on_a_contact_never_erased_is_found(
    engine: AsyncEngine, ledger: LedgerRepository, pair: list[tuple[int, list[ConsentEvent]]]
) -> None:
    """Regression: `evidence_json = NULL, erased_at = now()` passed verify as an erasure."""
    contact_id, rows = pair[0]
    await tamper(
        engine,
        "UPDATE consent_events SET evidence_json = NULL, erased_at = :at WHERE id = :id",
        at=T0 + timedelta(days=2),
        id=rows[1].id,
    )
    for report in await both(ledger, contact_id):
        assert found(report) == [(ProblemKind.ERASURE_UNRECORDED, rows[1].id)]


async def test_a_real_erasure_still_verifies(
    ledger: LedgerRepository,
    sessions: async_sessionmaker[AsyncSession],
    pair: list[tuple[int, list[ConsentEvent]]],
) -> None:
    contact_id, _ = pair[0]
    await erase(sessions, contact_id)
    for report in await both(ledger, contact_id):
        assert report.ok and report.rows_erased == 4


async def test_a_row_moved_to_another_contact_is_found(
    engine: AsyncEngine, ledger: LedgerRepository, pair: list[tuple[int, list[ConsentEvent]]]
) -> None:
    """Regression: moving a row's contact_id showed it in the other contact's proof, verified."""
    (_, rows), (other, _) = pair
    await tamper(
        engine, "UPDATE consent_events SET contact_id = :c WHERE id = :id", c=other, id=rows[1].id
    )
    for report in (await ledger.verify(), await ledger.verify(other)):
        assert found(report) == [(ProblemKind.WRONG_CONTACT, rows[1].id)]


async def test_a_whole_chain_moved_to_another_contact_is_found(
    engine: AsyncEngine, ledger: LedgerRepository, pair: list[tuple[int, list[ConsentEvent]]]
) -> None:
    (owner, rows), (other, _) = pair
    await tamper(
        engine, "UPDATE consent_events SET contact_id = :c WHERE chain = :o", c=other, o=owner
    )
    report = await ledger.verify(other)
    assert (ProblemKind.WRONG_CONTACT, rows[0].id) in found(report)


async def test_a_state_flipped_to_opted_in_is_found(
    engine: AsyncEngine, ledger: LedgerRepository, pair: list[tuple[int, list[ConsentEvent]]]
) -> None:
    """Regression: `consent_states.status = 'opted_in'` after a STOP passed verify."""
    contact_id, _ = pair[0]
    (stop,) = await ledger.apply(
        contact_id, [change(ConsentAction.WITHDRAWN, "stop", T0 + timedelta(hours=1))]
    )
    assert (await ledger.verify()).ok
    await tamper(
        engine, "UPDATE consent_states SET status = 'opted_in' WHERE contact_id = :c", c=contact_id
    )
    for report in await both(ledger, contact_id):
        assert found(report) == [(ProblemKind.STATE_MISMATCH, stop.id)]


async def test_a_state_pointed_back_at_an_older_opt_in_is_found(
    engine: AsyncEngine, ledger: LedgerRepository, pair: list[tuple[int, list[ConsentEvent]]]
) -> None:
    contact_id, rows = pair[0]
    await ledger.apply(
        contact_id, [change(ConsentAction.WITHDRAWN, "stop", T0 + timedelta(hours=1))]
    )
    await tamper(
        engine,
        "UPDATE consent_states SET status = 'opted_in', last_event_id = :e WHERE contact_id = :c",
        e=rows[2].id,
        c=contact_id,
    )
    for report in await both(ledger, contact_id):
        assert found(report) == [(ProblemKind.STATE_MISMATCH, rows[2].id)]


async def test_an_overruled_row_changes_no_state_and_verifies(
    ledger: LedgerRepository, pair: list[tuple[int, list[ConsentEvent]]]
) -> None:
    """A business opt-in after the customer's own STOP is recorded as `overruled`: the state stays
    opted out, and the replay in verify must agree."""
    contact_id, _ = pair[0]
    stop = change(ConsentAction.WITHDRAWN, "stop", T0 + timedelta(hours=2))
    await ledger.apply(contact_id, [replace(stop, source=Source.WHATSAPP_THREAD)])
    (late,) = await ledger.apply(
        contact_id, [change(ConsentAction.GRANTED, "late", T0 + timedelta(hours=3))]
    )
    assert late.action == ConsentAction.OVERRULED.value
    assert (await ledger.current(contact_id))["marketing"].status == "opted_out"
    assert (await ledger.verify()).ok


async def test_the_tail_deleted_and_the_head_moved_back_is_found(
    engine: AsyncEngine, ledger: LedgerRepository, pair: list[tuple[int, list[ConsentEvent]]]
) -> None:
    """Regression: deleting the newest row and rewriting `ledger_heads` (plain SHA-256, no key)
    passed verify."""
    contact_id, rows = pair[0]
    await tamper(engine, "DELETE FROM consent_events WHERE id = :id", id=rows[3].id)
    await tamper(
        engine,
        "UPDATE ledger_heads SET seq = 3, hash = :h WHERE chain = :c",
        h=rows[2].hash,
        c=contact_id,
    )
    for report in await both(ledger, contact_id):
        assert found(report) == [(ProblemKind.HEAD_MISMATCH, rows[2].id)]
    await tamper(
        engine, "UPDATE ledger_heads SET mac = NULL, key_id = NULL WHERE chain = :c", c=contact_id
    )
    for report in await both(ledger, contact_id):
        assert found(report) == [(ProblemKind.HEAD_MISMATCH, rows[2].id)]


async def test_a_row_rewritten_with_fresh_hashes_and_head_is_found_by_its_mac(
    engine: AsyncEngine, ledger: LedgerRepository, pair: list[tuple[int, list[ConsentEvent]]]
) -> None:
    """Whoever can write SQL can recompute SHA-256 hashes, not the MAC."""
    contact_id, rows = pair[0]
    forged = rows[3].model_dump()
    forged["business_name"] = "Someone Else"
    forged_hash = event_hash(forged)
    await tamper(
        engine,
        "UPDATE consent_events SET business_name = 'Someone Else', hash = :h WHERE id = :id",
        h=forged_hash,
        id=rows[3].id,
    )
    await tamper(
        engine, "UPDATE ledger_heads SET hash = :h WHERE chain = :c", h=forged_hash, c=contact_id
    )
    for report in await both(ledger, contact_id):
        assert found(report) == [(ProblemKind.MAC_MISMATCH, rows[3].id)]


async def test_a_mac_stripped_from_a_keyed_chain_is_found(
    engine: AsyncEngine, ledger: LedgerRepository, pair: list[tuple[int, list[ConsentEvent]]]
) -> None:
    contact_id, rows = pair[0]
    await tamper(
        engine, "UPDATE consent_events SET mac = NULL, key_id = NULL WHERE id = :id", id=rows[2].id
    )
    assert found(await ledger.verify(contact_id)) == [(ProblemKind.UNKEYED_AFTER_KEYED, rows[2].id)]


async def test_rows_under_rotated_keys_verify_with_both_keys_and_name_a_missing_one(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    ledger: LedgerRepository,
    pair: list[tuple[int, list[ConsentEvent]]],
) -> None:
    contact_id, rows = pair[0]
    attach_keys(engine, SIGN_2)
    (newer,) = await ledger.apply(
        contact_id, [change(ConsentAction.WITHDRAWN, "rotated", T0 + timedelta(hours=1))]
    )
    assert newer.key_id == "2"
    assert [row.key_id for row in await ledger.events(contact_id)][:4] == ["1"] * 4

    report = await ledger.verify()
    assert report.ok and report.key_ids == ("1", "2")

    without_1 = await verify_chains(sessions, contact_id, keys=LedgerKeys("2", {"2": KEY_2}))
    assert found(without_1) == [(ProblemKind.KEY_MISSING, rows[0].id)]
    assert "'1'" in without_1.problems[0].detail
    without_2 = await verify_chains(sessions, contact_id, keys=SIGN_1)
    assert found(without_2) == [(ProblemKind.KEY_MISSING, newer.id)]
    assert "'2'" in without_2.problems[0].detail


async def test_unkeyed_rows_from_before_the_key_verify_as_unkeyed(
    engine: AsyncEngine, contacts: ContactRepository, ledger: LedgerRepository
) -> None:
    contact_id, rows = await new_chain(contacts, ledger, "15552999999")
    assert all(row.key_id is None and row.mac is None for row in rows)
    legacy = await ledger.verify()
    assert legacy.ok and (legacy.rows_unkeyed, legacy.key_ids) == (4, ())

    attach_keys(engine, SIGN_1)
    await ledger.apply(
        contact_id, [change(ConsentAction.WITHDRAWN, "after-key", T0 + timedelta(hours=1))]
    )
    mixed = await ledger.verify()
    assert mixed.ok and (mixed.rows_checked, mixed.rows_unkeyed, mixed.key_ids) == (5, 4, ("1",))

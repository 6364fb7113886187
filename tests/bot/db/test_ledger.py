"""LedgerRepository: appending consent decisions, the state derived from them, merges, paging."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.consent_models import (
    GENESIS_HASH,
    ConsentState,
    LedgerHead,
    canonical_json,
    sha256_hex,
)
from bot.db.contacts import ContactRepository
from bot.db.engine import create_engine
from bot.db.ledger import ConsentChange, LedgerRepository
from bot.db.migrate import CONNECTION_ATTRIBUTE, alembic_config, migrate, schema_is_current
from flows.consent import ConsentAction, ConsentStatus, Method, Source

LEDGER_TABLES_CHILDREN_FIRST = ("consent_states", "conversations", "consent_events", "ledger_heads")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
WA = "15551234567"
BSUID = "US.13491208655302741918"


@pytest.fixture
async def contact_id(contacts: ContactRepository) -> int:
    contact = await contacts.resolve(wa_id=WA, user_id=None)
    assert contact.id is not None
    return contact.id


def change(
    action: ConsentAction,
    key: str,
    *,
    category: str = "marketing",
    at: datetime = T0,
    method: Method = Method.KEYWORD,
    source: Source = Source.WHATSAPP_THREAD,
) -> ConsentChange:
    return ConsentChange(
        category=category,
        action=action,
        source=source,
        method=method,
        evidence={"wamid": f"wamid.{key}", "text_shown": "Reply YES for offers", "ok": True},
        business_name="Example Business",
        policy_version="2025-01",
        occurred_at=at,
        event_key=key,
    )


async def status_of(ledger: LedgerRepository, contact_id: int, category: str) -> ConsentStatus:
    return (await ledger.current(contact_id))[category].status


async def test_a_grant_opts_in_with_its_evidence(ledger: LedgerRepository, contact_id: int) -> None:
    written = await ledger.apply(contact_id, [change(ConsentAction.GRANTED, "k1")])

    assert len(written) == 1
    event = written[0]
    assert (event.chain, event.seq, event.prev_hash) == (contact_id, 1, GENESIS_HASH)
    assert event.hash == event.expected_hash() and len(event.hash) == 64
    assert event.evidence_json == canonical_json(
        {"wamid": "wamid.k1", "text_shown": "Reply YES for offers", "ok": True}
    )
    assert json.loads(event.evidence_json)["wamid"] == "wamid.k1"
    assert event.evidence_digest == sha256_hex(event.evidence_json) and event.erased_at is None
    view = (await ledger.current(contact_id))["marketing"]
    assert view.status is ConsentStatus.OPTED_IN
    assert (view.since, view.source, view.method) == (T0, Source.WHATSAPP_THREAD, Method.KEYWORD)
    assert (view.policy_version, view.last_event_id) == ("2025-01", event.id)


async def test_a_withdrawal_without_prior_consent_opts_out(
    ledger: LedgerRepository, contact_id: int
) -> None:
    await ledger.apply(contact_id, [change(ConsentAction.WITHDRAWN, "stop")])
    assert await status_of(ledger, contact_id, "marketing") is ConsentStatus.OPTED_OUT


async def test_an_expired_request_falls_back_to_the_opt_out(
    ledger: LedgerRepository, contact_id: int
) -> None:
    await ledger.apply(contact_id, [change(ConsentAction.WITHDRAWN, "stop")])
    await ledger.apply(
        contact_id, [change(ConsentAction.PENDING, "ask", at=T0 + timedelta(days=1))]
    )
    assert await status_of(ledger, contact_id, "marketing") is ConsentStatus.PENDING

    expired_at = T0 + timedelta(days=2)
    (expired,) = await ledger.apply(
        contact_id,
        [change(ConsentAction.EXPIRED, "expiry", at=expired_at, method=Method.OPTIN_EXPIRY)],
    )

    view = (await ledger.current(contact_id))["marketing"]
    assert view.status is ConsentStatus.OPTED_OUT
    assert (view.since, view.last_event_id) == (expired_at, expired.id)


async def test_a_request_never_downgrades_an_opt_in(
    ledger: LedgerRepository, contact_id: int
) -> None:
    (granted,) = await ledger.apply(contact_id, [change(ConsentAction.GRANTED, "yes")])
    later = T0 + timedelta(hours=1)
    await ledger.apply(contact_id, [change(ConsentAction.PENDING, "ask", at=later)])
    await ledger.apply(contact_id, [change(ConsentAction.EXPIRED, "expiry", at=later)])

    view = (await ledger.current(contact_id))["marketing"]
    assert view.status is ConsentStatus.OPTED_IN
    assert (view.since, view.last_event_id) == (T0, granted.id)
    assert [e.action for e in await ledger.events(contact_id)] == ["granted", "pending", "expired"]


async def test_categories_are_independent_and_a_reconfirmation_renews_since(
    ledger: LedgerRepository, contact_id: int
) -> None:
    later = T0 + timedelta(days=30)
    await ledger.apply(
        contact_id,
        [
            change(ConsentAction.GRANTED, "m", category="marketing"),
            change(ConsentAction.WITHDRAWN, "r", category="reminders"),
            change(ConsentAction.RECONFIRMED, "m2", category="marketing", at=later),
        ],
    )
    current = await ledger.current(contact_id)
    assert current["marketing"].status is ConsentStatus.OPTED_IN
    assert current["marketing"].since == later
    assert current["reminders"].status is ConsentStatus.OPTED_OUT


async def test_replaying_an_event_key_writes_nothing(
    ledger: LedgerRepository, contact_id: int, contacts: ContactRepository
) -> None:
    first = await ledger.apply(
        contact_id,
        [change(ConsentAction.GRANTED, "k1"), change(ConsentAction.GRANTED, "k1")],
    )
    again = await ledger.apply(
        contact_id,
        [change(ConsentAction.GRANTED, "k1"), change(ConsentAction.WITHDRAWN, "k2")],
    )
    other = await contacts.resolve(wa_id="15550000000", user_id=None)
    assert other.id is not None
    elsewhere = await ledger.apply(other.id, [change(ConsentAction.GRANTED, "k2")])

    assert [e.seq for e in first] == [1]
    assert [(e.seq, e.event_key) for e in again] == [(2, "k2")]
    assert elsewhere == []
    assert [e.event_key for e in await ledger.events(contact_id)] == ["k1", "k2"]
    assert await status_of(ledger, contact_id, "marketing") is ConsentStatus.OPTED_OUT
    assert (await ledger.verify()).ok


async def test_apply_refuses_unknown_contacts_and_naive_times(
    ledger: LedgerRepository, contact_id: int
) -> None:
    with pytest.raises(LookupError):
        await ledger.apply(contact_id + 1000, [change(ConsentAction.GRANTED, "k")])
    naive = datetime(2025, 3, 1, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        await ledger.apply(contact_id, [change(ConsentAction.GRANTED, "k", at=naive)])
    assert await ledger.events(contact_id) == []
    assert await ledger.current(contact_id) == {}


async def test_times_come_back_aware_and_equal(ledger: LedgerRepository, contact_id: int) -> None:
    madrid = datetime(2025, 7, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    (written,) = await ledger.apply(contact_id, [change(ConsentAction.GRANTED, "k", at=madrid)])

    (stored,) = await ledger.events(contact_id)
    assert stored.occurred_at == madrid and stored.occurred_at.tzinfo == UTC
    assert stored.recorded_at == written.recorded_at and stored.recorded_at.tzinfo == UTC
    since = (await ledger.current(contact_id))["marketing"].since
    assert since == madrid and since is not None and since.utcoffset() == timedelta(0)
    assert stored.expected_hash() == stored.hash


async def test_events_page_by_recorded_at_and_id(ledger: LedgerRepository, contact_id: int) -> None:
    for number in range(5):
        await ledger.apply(contact_id, [change(ConsentAction.GRANTED, f"k{number}")])

    first = await ledger.events(contact_id, limit=2)
    rest = await ledger.events(contact_id, after_id=first[-1].id)

    assert [e.event_key for e in first + rest] == [f"k{n}" for n in range(5)]
    assert [e.seq for e in first + rest] == [1, 2, 3, 4, 5]
    with pytest.raises(LookupError):
        await ledger.events(contact_id, after_id=-1)


async def test_concurrent_applies_on_one_contact_make_one_valid_chain(
    ledger: LedgerRepository, contact_id: int, sessions: async_sessionmaker[AsyncSession]
) -> None:
    actions = [ConsentAction.GRANTED, ConsentAction.WITHDRAWN]
    results = await asyncio.gather(
        *(
            ledger.apply(
                contact_id,
                [change(actions[n % 2], f"c{n}", at=T0 + timedelta(seconds=n))],
            )
            for n in range(20)
        )
    )

    assert sorted(len(written) for written in results) == [1] * 20
    events = await ledger.events(contact_id)
    assert sorted(e.seq for e in events) == list(range(1, 21))
    report = await ledger.verify(contact_id)
    assert report.ok and (report.chains_checked, report.rows_checked) == (1, 20)
    async with sessions() as session:
        head = await session.get(LedgerHead, contact_id)
    last = max(events, key=lambda e: e.seq)
    assert head is not None and (head.seq, head.hash) == (20, last.hash)
    # Whatever order they were applied in, the latest-dated decision (c19, a withdrawal) is the
    # one that stands; older ones that arrived after it are recorded as overruled.
    (latest,) = [e for e in events if e.event_key == "c19"]
    current = (await ledger.current(contact_id))["marketing"]
    assert (current.status, current.last_event_id) == (ConsentStatus.OPTED_OUT, latest.id)


async def test_merge_keeps_the_opt_out_and_both_chains(
    ledger: LedgerRepository,
    contacts: ContactRepository,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    older = await contacts.resolve(wa_id=WA, user_id=None)
    newer = await contacts.resolve(wa_id=None, user_id=BSUID)
    assert older.id is not None and newer.id is not None
    later = T0 + timedelta(days=1)
    await ledger.apply(
        older.id,
        [
            change(ConsentAction.GRANTED, "a-marketing", at=later),
            change(ConsentAction.LAPSED, "a-reminders", category="reminders"),
        ],
    )
    await ledger.apply(
        newer.id,
        [
            change(ConsentAction.WITHDRAWN, "b-marketing"),
            change(ConsentAction.GRANTED, "b-reminders", category="reminders", at=later),
            change(ConsentAction.GRANTED, "b-alerts", category="account_alerts"),
        ],
    )
    async with sessions() as session:
        absorbed_head = await session.get(LedgerHead, newer.id)
    assert absorbed_head is not None

    merged = await contacts.resolve(wa_id=WA, user_id=BSUID)

    assert merged.id == older.id and await contacts.get(newer.id) is None
    current = await ledger.current(older.id)
    assert {name: view.status for name, view in current.items()} == {
        "marketing": ConsentStatus.OPTED_OUT,
        "reminders": ConsentStatus.OPTED_IN,
        "account_alerts": ConsentStatus.OPTED_IN,
    }
    assert current["marketing"].method is Method.CONTACT_MERGE
    assert current["marketing"].source is Source.WHATSAPP_THREAD
    assert current["marketing"].since == T0
    events = await ledger.events(older.id)
    assert {e.chain for e in events} == {older.id, newer.id}
    assert len(events) == 7
    carried = [e for e in events if e.method == Method.CONTACT_MERGE]
    assert sorted((e.category, e.action, e.chain) for e in carried) == [
        ("marketing", "withdrawn", older.id),
        ("reminders", "granted", older.id),
    ]
    evidence = json.loads(carried[0].evidence_json)
    assert evidence["merged_from_contact"] == newer.id
    assert evidence["merged_chain_head"] == absorbed_head.hash
    async with sessions() as session:
        leftovers = await session.exec(
            select(ConsentState).where(col(ConsentState.contact_id) == newer.id)
        )
        assert leftovers.all() == []
    for report in (await ledger.verify(older.id), await ledger.verify()):
        assert report.ok and report.chains_checked == 2 and report.rows_checked == 7


async def test_merge_never_lifts_the_survivors_opt_out(
    ledger: LedgerRepository, contacts: ContactRepository
) -> None:
    older = await contacts.resolve(wa_id=WA, user_id=None)
    newer = await contacts.resolve(wa_id=None, user_id=BSUID)
    assert older.id is not None and newer.id is not None
    await ledger.apply(older.id, [change(ConsentAction.WITHDRAWN, "a")])
    await ledger.apply(newer.id, [change(ConsentAction.GRANTED, "b", at=T0 + timedelta(days=5))])

    await contacts.resolve(wa_id=WA, user_id=BSUID)

    view = (await ledger.current(older.id))["marketing"]
    assert view.status is ConsentStatus.OPTED_OUT and view.method is Method.KEYWORD
    assert [e.event_key for e in await ledger.events(older.id)] == ["a", "b"]


async def test_stream_states_pages_through_every_state(
    ledger: LedgerRepository, contacts: ContactRepository
) -> None:
    contact_ids: list[int] = []
    for number in range(25):
        contact = await contacts.resolve(wa_id=f"1555000{number:04d}", user_id=None)
        assert contact.id is not None
        contact_ids.append(contact.id)
        await ledger.apply(
            contact.id,
            [
                change(ConsentAction.GRANTED, f"{number}-{category}", category=f"cat{category:03d}")
                for category in range(100)
            ],
        )

    streamed = [pair async for pair in ledger.stream_states(batch=1000)]

    keys = [(state.contact_id, state.category) for state, _ in streamed]
    assert len(keys) == 2500 and len(set(keys)) == 2500 and keys == sorted(keys)
    assert all(event.id == state.last_event_id for state, event in streamed)
    assert all(event.category == state.category for state, event in streamed)

    cutoff = max(state.updated_at for state, _ in streamed) + timedelta(microseconds=1)
    await asyncio.sleep(0.01)
    await ledger.apply(contact_ids[3], [change(ConsentAction.WITHDRAWN, "late", category="cat007")])
    changed = [pair async for pair in ledger.stream_states(since=cutoff, batch=1)]
    assert [(s.contact_id, s.category, s.status, e.event_key) for s, e in changed] == [
        (contact_ids[3], "cat007", "opted_out", "late")
    ]


async def test_the_ledger_migration_downgrades_to_0001_and_back(empty_database_url: str) -> None:
    await migrate(empty_database_url)
    config = alembic_config(empty_database_url)

    def step(connection: Connection, target: str) -> set[str]:
        config.attributes[CONNECTION_ATTRIBUTE] = connection
        (command.downgrade if target == "0001" else command.upgrade)(config, target)
        return set(inspect(connection).get_table_names()) - {"alembic_version"}

    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as connection:
            assert await connection.run_sync(step, "0001") == {
                "contacts",
                "contact_identities",
                "transcript_entries",
            }
        async with engine.begin() as connection:
            assert await connection.run_sync(step, "head") >= set(LEDGER_TABLES_CHILDREN_FIRST)
        assert await schema_is_current(engine)
    finally:
        await engine.dispose()


async def test_merge_does_not_let_a_newer_request_downgrade_an_opt_in(
    ledger: LedgerRepository, contacts: ContactRepository
) -> None:
    older = await contacts.resolve(wa_id=WA, user_id=None)
    newer = await contacts.resolve(wa_id=None, user_id=BSUID)
    assert older.id is not None and newer.id is not None
    (granted,) = await ledger.apply(older.id, [change(ConsentAction.GRANTED, "a")])
    await ledger.apply(newer.id, [change(ConsentAction.PENDING, "b", at=T0 + timedelta(days=1))])

    await contacts.resolve(wa_id=WA, user_id=BSUID)

    view = (await ledger.current(older.id))["marketing"]
    assert (view.status, view.last_event_id) == (ConsentStatus.OPTED_IN, granted.id)
    assert [e.event_key for e in await ledger.events(older.id)] == ["a", "b"]

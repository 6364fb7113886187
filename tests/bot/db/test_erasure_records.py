"""Erasure in the database: pseudonyms that still find the person, and the corner cases of
numbers that moved between people and records that were merged."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.contacts import ContactRepository
from bot.db.erasure import ErasedRecords, ErasureRequest, erase_records
from bot.db.ledger import ConsentChange, LedgerRepository
from bot.db.pseudonyms import Pseudonymiser, is_erased
from flows.consent import ConsentAction, ConsentStatus, Method, Source

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = Pseudonymiser(b"a test pseudonym key of 32 bytes")
WA = "15551234567"
USER_A = "US.1111111111111111"
USER_B = "US.2222222222222222"


@pytest.fixture
def contacts(sessions: async_sessionmaker[AsyncSession]) -> ContactRepository:
    return ContactRepository(sessions, pseudonyms=KEY)


async def erase(sessions: async_sessionmaker[AsyncSession], contact_id: int) -> ErasedRecords:
    request = ErasureRequest(
        contact_id=contact_id,
        erasure_id=uuid.uuid4().hex,
        categories=("marketing", "reminders"),
        business_name="Acme Shoes",
        requested_via="api",
        now=datetime.now(UTC),
    )
    async with sessions() as session:
        records = await erase_records(session, request, KEY)
        await session.commit()
    assert records is not None
    return records


def grant(key: str, at: datetime = T0) -> ConsentChange:
    return ConsentChange(
        category="marketing",
        action=ConsentAction.GRANTED,
        source=Source.WEBSITE,
        method=Method.API_RECORD,
        evidence={"ip": "203.0.113.7", "key": key},
        business_name="Acme Shoes",
        policy_version=None,
        occurred_at=at,
        event_key=key,
    )


def test_pseudonyms_are_keyed_stable_and_fit_the_column() -> None:
    pseudonym = KEY.of("wa_id", WA)

    assert pseudonym == KEY.of("wa_id", WA) and len(pseudonym) <= 32
    assert pseudonym.startswith("erased:") and WA not in pseudonym
    assert KEY.of("user_id", WA) != pseudonym
    assert Pseudonymiser(b"another key, also 32 bytes long!").of("wa_id", WA) != pseudonym
    assert KEY.of("wa_id", pseudonym) == pseudonym
    assert is_erased(pseudonym, None) and not is_erased(WA, KEY.of("user_id", USER_A))
    with pytest.raises(ValueError):
        Pseudonymiser(b"short")


async def test_an_erased_contact_is_found_by_its_number_or_bsuid(
    contacts: ContactRepository,
    ledger: LedgerRepository,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    contact = await contacts.resolve(wa_id=WA, user_id=USER_A, profile_name="Ana", locale="es")
    assert contact.id is not None
    await ledger.apply(contact.id, [grant("g1")])

    records = await erase(sessions, contact.id)

    assert records.former_identifiers == tuple(sorted((WA, USER_A)))
    erased = await contacts.get(contact.id)
    assert erased is not None and (erased.wa_id, erased.user_id) == (
        KEY.of("wa_id", WA),
        KEY.of("user_id", USER_A),
    )
    assert (erased.profile_name, erased.locale) == (None, None)
    assert {i.value for i in await contacts.identities(contact.id)} == {
        KEY.of("wa_id", WA),
        KEY.of("user_id", USER_A),
    }
    assert (await contacts.find(WA)) == erased
    assert (await contacts.find(USER_A)) == erased
    assert await ContactRepository(sessions).find(WA) is None  # without the key: a stranger
    assert {v.status for v in (await ledger.current(contact.id)).values()} == {
        ConsentStatus.OPTED_OUT
    }

    again = await contacts.resolve(wa_id=None, user_id=USER_A, profile_name="Ana")
    assert again.id == contact.id and again.user_id == USER_A
    assert again.wa_id == KEY.of("wa_id", WA)
    assert (await ledger.verify()).ok


async def test_a_recycled_number_is_not_the_erased_person_and_both_can_be_erased(
    contacts: ContactRepository,
    ledger: LedgerRepository,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first = await contacts.resolve(wa_id=WA, user_id=USER_A)
    assert first.id is not None
    await erase(sessions, first.id)

    # The number now belongs to someone with another BSUID: a new person, not do-not-contact.
    second = await contacts.resolve(wa_id=WA, user_id=USER_B)
    assert second.id is not None and second.id != first.id
    assert await ledger.current(second.id) == {}

    await erase(sessions, second.id)

    older = await contacts.get(first.id)
    newer = await contacts.get(second.id)
    assert older is not None and newer is not None
    assert (older.wa_id, older.user_id) == (None, KEY.of("user_id", USER_A))
    assert newer.wa_id == KEY.of("wa_id", WA)
    found = await contacts.find(WA)
    assert found is not None and found.id == second.id
    back = await contacts.resolve(wa_id=WA, user_id=None)
    assert back.id == second.id and back.wa_id == WA


async def test_merged_records_are_erased_with_every_chain_intact(
    contacts: ContactRepository,
    ledger: LedgerRepository,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    by_number = await contacts.resolve(wa_id=WA, user_id=None)
    by_user = await contacts.resolve(wa_id=None, user_id=USER_A)
    assert by_number.id is not None and by_user.id is not None
    await ledger.apply(by_number.id, [grant("n1")])
    await ledger.apply(by_user.id, [grant("u1", T0 + timedelta(hours=1))])
    merged = await contacts.resolve(wa_id=WA, user_id=USER_A)
    assert merged.id is not None

    records = await erase(sessions, merged.id)

    report = await ledger.verify(merged.id)
    assert report.ok and report.chains_checked == 2
    assert report.rows_erased == records.evidence_erased >= 2
    events = await ledger.events(merged.id)
    assert all(e.event_key.startswith(("erased:", "erasure:")) for e in events)
    assert {e.category for e in events if e.method == Method.ERASURE} == {"marketing", "reminders"}
    assert await ledger.apply(merged.id, [grant("n1")]) == []

"""ContactRepository: one contact per person whatever identifiers arrive, and their history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.contacts import ContactRepository, identifier_kind
from bot.db.models import Contact, ContactIdentity, TranscriptEntry
from bot.db.transcript import TranscriptRepository

WA = "15551234567"
WA_NEW = "15557654321"
BSUID = "US.13491208655302741918"
BSUID_OTHER = "US.99999999999999999999"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def _count_contacts(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return (await session.exec(select(func.count()).select_from(Contact))).one()


async def _current_identities(
    sessions: async_sessionmaker[AsyncSession], contact_id: int
) -> set[tuple[str, str]]:
    async with sessions() as session:
        rows = await session.exec(
            select(ContactIdentity).where(
                col(ContactIdentity.contact_id) == contact_id,
                col(ContactIdentity.valid_to).is_(None),
            )
        )
        return {(row.kind, row.value) for row in rows.all()}


async def test_resolve_creates_then_reuses_and_updates_profile(
    contacts: ContactRepository, sessions: async_sessionmaker[AsyncSession]
) -> None:
    first = await contacts.resolve(wa_id=WA, user_id=None, profile_name="Ana")
    again = await contacts.resolve(wa_id=WA, user_id=None, profile_name="Ana María", locale="es")

    assert first.id is not None
    assert again.id == first.id
    assert (again.wa_id, again.profile_name, again.locale) == (WA, "Ana María", "es")
    assert again.created_at.tzinfo is not None and again.created_at.utcoffset() is not None
    assert await _count_contacts(sessions) == 1
    stored = await contacts.get(first.id)
    assert stored is not None and stored.profile_name == "Ana María"


async def test_resolve_without_profile_keeps_known_profile(contacts: ContactRepository) -> None:
    await contacts.resolve(wa_id=WA, user_id=None, profile_name="Ana", username="ana")
    again = await contacts.resolve(wa_id=WA, user_id=None)
    assert (again.profile_name, again.username) == ("Ana", "ana")


async def test_resolve_needs_an_identifier(contacts: ContactRepository) -> None:
    with pytest.raises(ValueError, match="wa_id or a user_id"):
        await contacts.resolve(wa_id=None, user_id=None)


async def test_user_id_learnt_later_fills_in_the_same_contact(
    contacts: ContactRepository, sessions: async_sessionmaker[AsyncSession]
) -> None:
    by_number = await contacts.resolve(wa_id=WA, user_id=None)
    both = await contacts.resolve(wa_id=WA, user_id=BSUID, parent_user_id="US.P1")
    by_bsuid_only = await contacts.resolve(wa_id=None, user_id=BSUID, username="ana")

    assert by_number.id == both.id == by_bsuid_only.id
    assert (by_bsuid_only.wa_id, by_bsuid_only.user_id) == (WA, BSUID)
    assert (by_bsuid_only.parent_user_id, by_bsuid_only.username) == ("US.P1", "ana")
    assert await _count_contacts(sessions) == 1
    assert by_number.id is not None
    assert await _current_identities(sessions, by_number.id) == {
        ("wa_id", WA),
        ("user_id", BSUID),
    }


async def test_wa_id_learnt_later_fills_in_a_username_contact(
    contacts: ContactRepository, sessions: async_sessionmaker[AsyncSession]
) -> None:
    by_bsuid = await contacts.resolve(wa_id=None, user_id=BSUID, username="ana")
    both = await contacts.resolve(wa_id=WA, user_id=BSUID)
    assert both.id == by_bsuid.id and both.wa_id == WA
    assert await _count_contacts(sessions) == 1


@pytest.mark.parametrize("first_seen", ["wa_id", "user_id"])
async def test_two_records_of_one_person_merge_into_the_older(
    first_seen: str,
    contacts: ContactRepository,
    transcript: TranscriptRepository,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    if first_seen == "wa_id":
        older = await contacts.resolve(wa_id=WA, user_id=None, profile_name="Ana")
        newer = await contacts.resolve(wa_id=None, user_id=BSUID, username="ana")
    else:
        older = await contacts.resolve(wa_id=None, user_id=BSUID, username="ana")
        newer = await contacts.resolve(wa_id=WA, user_id=None, profile_name="Ana")
    assert older.id is not None and newer.id is not None and older.id != newer.id
    await transcript.record_inbound(
        older.id, wamid="wamid.A", kind="text", text="hi", payload_json=None, occurred_at=T0
    )
    await transcript.record_inbound(
        newer.id, wamid="wamid.B", kind="text", text="yo", payload_json=None, occurred_at=T0
    )

    merged = await contacts.resolve(wa_id=WA, user_id=BSUID)

    assert merged.id == older.id
    assert (merged.wa_id, merged.user_id) == (WA, BSUID)
    assert (merged.profile_name, merged.username) == ("Ana", "ana")
    assert await contacts.get(newer.id) is None
    assert await _count_contacts(sessions) == 1
    entries = await transcript.list_for_contact(older.id)
    assert sorted(entry.wamid or "" for entry in entries) == ["wamid.A", "wamid.B"]
    assert await _current_identities(sessions, older.id) == {("wa_id", WA), ("user_id", BSUID)}
    assert (await contacts.find(WA)) is not None
    found = await contacts.find(BSUID)
    assert found is not None and found.id == older.id


async def test_merge_keeps_the_number_just_seen_and_remembers_the_other(
    contacts: ContactRepository, sessions: async_sessionmaker[AsyncSession]
) -> None:
    older = await contacts.resolve(wa_id=WA, user_id=BSUID)
    newer = await contacts.resolve(wa_id=WA_NEW, user_id=None)
    # The BSUID holder now writes from the number that had a record of its own.
    merged = await contacts.resolve(wa_id=WA_NEW, user_id=BSUID)

    assert merged.id == older.id and merged.wa_id == WA_NEW
    assert await contacts.get(newer.id or 0) is None
    assert older.id is not None
    history = await contacts.identities(older.id)
    assert {(h.kind, h.value, h.valid_to is None) for h in history} == {
        ("wa_id", WA, False),
        ("wa_id", WA_NEW, True),
        ("user_id", BSUID, True),
    }
    former = await contacts.find(WA)
    assert former is not None and former.id == older.id


@pytest.mark.parametrize("identifiers", [(WA, None), (None, BSUID), (WA, BSUID)])
async def test_concurrent_resolves_of_a_new_contact_make_one_row(
    identifiers: tuple[str | None, str | None],
    contacts: ContactRepository,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    wa_id, user_id = identifiers
    resolved = await asyncio.gather(
        *(contacts.resolve(wa_id=wa_id, user_id=user_id) for _ in range(8))
    )

    assert len({contact.id for contact in resolved}) == 1
    assert await _count_contacts(sessions) == 1
    contact_id = resolved[0].id
    assert contact_id is not None
    expected = {
        (kind, value)
        for kind, value in zip(("wa_id", "user_id"), identifiers, strict=True)
        if value
    }
    history = await contacts.identities(contact_id)
    assert sorted((h.kind, h.value) for h in history) == sorted(expected)


async def test_change_number_keeps_the_contact_and_its_history(
    contacts: ContactRepository, sessions: async_sessionmaker[AsyncSession]
) -> None:
    before = await contacts.resolve(wa_id=WA, user_id=BSUID, profile_name="Ana")
    assert before.id is not None

    after = await contacts.change_number(old_wa_id=WA, new_wa_id=WA_NEW)

    assert after.id == before.id and after.wa_id == WA_NEW and after.user_id == BSUID
    for identifier in (WA, WA_NEW, BSUID):
        found = await contacts.find(identifier)
        assert found is not None and found.id == before.id, identifier
    # A late message from the old number still lands on the contact without undoing the change.
    late = await contacts.resolve(wa_id=WA, user_id=None)
    assert late.id == before.id and late.wa_id == WA_NEW
    history = await contacts.identities(before.id)
    wa_history = [(h.value, h.valid_to is None) for h in history if h.kind == "wa_id"]
    assert wa_history == [(WA, False), (WA_NEW, True)]
    closed = next(h for h in history if h.value == WA)
    assert closed.valid_to is not None and closed.valid_to.tzinfo is not None
    # Applying the same system message again changes nothing.
    replay = await contacts.change_number(old_wa_id=WA, new_wa_id=WA_NEW)
    assert replay.id == before.id
    assert len(await contacts.identities(before.id)) == len(history)
    assert await _count_contacts(sessions) == 1


async def test_change_number_merges_a_record_already_made_for_the_new_number(
    contacts: ContactRepository,
    transcript: TranscriptRepository,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    old = await contacts.resolve(wa_id=WA, user_id=None)
    new = await contacts.resolve(wa_id=WA_NEW, user_id=None)
    assert new.id is not None
    await transcript.record_inbound(
        new.id, wamid="wamid.N", kind="text", text="new phone", payload_json=None, occurred_at=T0
    )

    changed = await contacts.change_number(old_wa_id=WA, new_wa_id=WA_NEW, new_user_id=BSUID)

    assert changed.id == old.id
    assert (changed.wa_id, changed.user_id) == (WA_NEW, BSUID)
    assert await _count_contacts(sessions) == 1
    assert old.id is not None
    assert [e.wamid for e in await transcript.list_for_contact(old.id)] == ["wamid.N"]


async def test_change_number_for_an_unknown_contact_creates_it_with_history(
    contacts: ContactRepository,
) -> None:
    contact = await contacts.change_number(old_wa_id=WA, new_wa_id=WA_NEW)
    assert contact.wa_id == WA_NEW
    found = await contacts.find(WA)
    assert found is not None and found.id == contact.id


async def test_a_recycled_number_goes_to_its_new_owner(
    contacts: ContactRepository, sessions: async_sessionmaker[AsyncSession]
) -> None:
    previous_owner = await contacts.resolve(wa_id=WA, user_id=BSUID)
    new_owner = await contacts.resolve(wa_id=WA, user_id=BSUID_OTHER)

    assert new_owner.id != previous_owner.id
    assert (new_owner.wa_id, new_owner.user_id) == (WA, BSUID_OTHER)
    assert previous_owner.id is not None
    kept = await contacts.get(previous_owner.id)
    assert kept is not None and (kept.wa_id, kept.user_id) == (None, BSUID)
    found = await contacts.find(WA)
    assert found is not None and found.id == new_owner.id
    assert await _count_contacts(sessions) == 2


async def test_an_implicit_number_change_is_recorded(contacts: ContactRepository) -> None:
    before = await contacts.resolve(wa_id=WA, user_id=BSUID)
    after = await contacts.resolve(wa_id=WA_NEW, user_id=BSUID)
    assert after.id == before.id and after.wa_id == WA_NEW
    found = await contacts.find(WA)
    assert found is not None and found.id == before.id


async def test_find_and_get_unknown(contacts: ContactRepository) -> None:
    assert await contacts.find(WA) is None
    assert await contacts.find(BSUID) is None
    assert await contacts.get(123456) is None


def test_identifier_kind() -> None:
    assert identifier_kind(WA) == "wa_id"
    assert identifier_kind(BSUID) == "user_id"


async def test_deleting_a_contact_removes_its_transcript(
    contacts: ContactRepository,
    transcript: TranscriptRepository,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    contact = await contacts.resolve(wa_id=WA, user_id=None)
    assert contact.id is not None
    await transcript.record_inbound(
        contact.id, wamid="wamid.D", kind="text", text="x", payload_json=None, occurred_at=T0
    )
    async with sessions() as session:
        stored = await session.get(Contact, contact.id)
        await session.delete(stored)
        await session.commit()
        remaining = await session.exec(select(func.count()).select_from(TranscriptEntry))
        assert remaining.one() == 0


async def test_set_locale_is_one_update_and_changes_nothing_else(
    contacts: ContactRepository,
) -> None:
    contact = await contacts.resolve(wa_id="34612345678", user_id=None, profile_name="Ana")
    updated = await contacts.set_locale(contact, "es")
    assert (updated.id, updated.locale, updated.profile_name) == (contact.id, "es", "Ana")
    assert contact.id is not None
    stored = await contacts.get(contact.id)
    assert stored is not None and (stored.locale, stored.wa_id) == ("es", "34612345678")
    assert await contacts.set_locale(updated, "es") is updated  # nothing to write

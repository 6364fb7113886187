"""The per-contact conversation record: stored with the ledger, outbox cleared once, merged."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

import bot.db.ledger
from bot.db.consent_models import Conversation
from bot.db.contacts import ContactRepository
from bot.db.ledger import ConsentChange, ConversationRecord, LedgerRepository
from flows.consent import ConsentAction, ConsentStatus, Method, Source

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
WA = "15551234567"
BSUID = "US.13491208655302741918"

AWAITING = ConversationRecord(
    state="awaiting_optin",
    token="tok-1",
    data_json='{"categories":["marketing"]}',
    last_event_id="msg:wamid.1",
    outbox_json='[{"reply":"optin_prompt"}]',
)


@pytest.fixture
async def contact_id(contacts: ContactRepository) -> int:
    contact = await contacts.resolve(wa_id=WA, user_id=None)
    assert contact.id is not None
    return contact.id


def pending(key: str) -> ConsentChange:
    return ConsentChange(
        category="marketing",
        action=ConsentAction.PENDING,
        source=Source.WHATSAPP_THREAD,
        method=Method.DOUBLE_OPT_IN,
        evidence={"template": "optin_request", "language": "en"},
        business_name="Example Business",
        policy_version="2025-01",
        occurred_at=T0,
        event_key=key,
    )


def record(state: str, last_event_id: str, outbox_json: str | None = None) -> ConversationRecord:
    return ConversationRecord(
        state=state,
        token=f"tok-{last_event_id}",
        data_json="{}",
        last_event_id=last_event_id,
        outbox_json=outbox_json,
    )


async def test_a_conversation_is_stored_and_replaced(
    ledger: LedgerRepository, contact_id: int
) -> None:
    assert await ledger.conversation(contact_id) is None

    assert await ledger.apply(contact_id, [], conversation=AWAITING) == []
    assert await ledger.conversation(contact_id) == AWAITING

    idle = record("idle", "msg:wamid.2")
    await ledger.apply(contact_id, [], conversation=idle)
    assert await ledger.conversation(contact_id) == idle


async def test_ledger_rows_and_conversation_are_written_together(
    ledger: LedgerRepository, contact_id: int
) -> None:
    written = await ledger.apply(contact_id, [pending("p1")], conversation=AWAITING)
    replay = await ledger.apply(contact_id, [pending("p1")], conversation=AWAITING)

    assert [e.event_key for e in written] == ["p1"] and replay == []
    assert await ledger.conversation(contact_id) == AWAITING
    assert (await ledger.current(contact_id))["marketing"].status is ConsentStatus.PENDING


async def test_a_failed_conversation_write_leaves_no_ledger_row(
    ledger: LedgerRepository, contact_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(bot.db.ledger, "upsert_conversation", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        await ledger.apply(contact_id, [pending("p1")], conversation=AWAITING)

    assert await ledger.events(contact_id) == []
    assert await ledger.current(contact_id) == {}
    assert (await ledger.verify()).ok


async def test_the_outbox_is_cleared_only_for_the_event_that_filled_it(
    ledger: LedgerRepository, contact_id: int
) -> None:
    await ledger.apply(contact_id, [], conversation=AWAITING)

    await ledger.clear_outbox(contact_id, "msg:wamid.0")
    assert await ledger.conversation(contact_id) == AWAITING

    await ledger.clear_outbox(contact_id, AWAITING.last_event_id)
    cleared = await ledger.conversation(contact_id)
    assert cleared is not None and cleared.outbox_json is None
    assert (cleared.state, cleared.data_json) == (AWAITING.state, AWAITING.data_json)

    await ledger.clear_outbox(contact_id + 1000, "msg:wamid.1")


async def test_merge_keeps_the_survivors_conversation(
    ledger: LedgerRepository,
    contacts: ContactRepository,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    older = await contacts.resolve(wa_id=WA, user_id=None)
    newer = await contacts.resolve(wa_id=None, user_id=BSUID)
    assert older.id is not None and newer.id is not None
    await ledger.apply(older.id, [], conversation=record("idle", "msg:a"))
    await ledger.apply(newer.id, [], conversation=record("awaiting_optin", "msg:b"))

    merged = await contacts.resolve(wa_id=WA, user_id=BSUID)

    assert merged.id == older.id
    assert await ledger.conversation(older.id) == record("idle", "msg:a")
    async with sessions() as session:
        assert await session.get(Conversation, newer.id) is None


async def test_merge_hands_the_absorbed_conversation_over(
    ledger: LedgerRepository, contacts: ContactRepository
) -> None:
    older = await contacts.resolve(wa_id=WA, user_id=None)
    newer = await contacts.resolve(wa_id=None, user_id=BSUID)
    assert older.id is not None and newer.id is not None
    await ledger.apply(newer.id, [pending("p1")], conversation=AWAITING)

    await contacts.resolve(wa_id=WA, user_id=BSUID)

    assert await ledger.conversation(older.id) == AWAITING
    assert await ledger.conversation(newer.id) is None
    assert (await ledger.current(older.id))["marketing"].status is ConsentStatus.PENDING
    assert (await ledger.verify(older.id)).ok

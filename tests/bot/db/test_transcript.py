"""TranscriptRepository: idempotent recording and statuses that only move forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.contacts import ContactRepository
from bot.db.models import TranscriptEntry
from bot.db.transcript import TranscriptRepository

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def contact_id(contacts: ContactRepository) -> int:
    contact = await contacts.resolve(wa_id="15551234567", user_id=None)
    assert contact.id is not None
    return contact.id


async def _rows(
    sessions: async_sessionmaker[AsyncSession], direction: str
) -> list[TranscriptEntry]:
    async with sessions() as session:
        result = await session.exec(
            select(TranscriptEntry)
            .where(col(TranscriptEntry.direction) == direction)
            .order_by(col(TranscriptEntry.id))
        )
        return list(result.all())


async def _send(
    transcript: TranscriptRepository, contact_id: int, message_id: str, wamid: str
) -> None:
    assert await transcript.record_outbound(
        contact_id,
        message_id=message_id,
        kind="text",
        text="Your order shipped",
        payload_json='{"category": "order_updates"}',
        status="queued",
        occurred_at=T0,
    )
    assert await transcript.mark_outbound(message_id, status="sent", wamid=wamid)


async def test_inbound_redelivery_has_no_second_effect(
    transcript: TranscriptRepository,
    sessions: async_sessionmaker[AsyncSession],
    contact_id: int,
) -> None:
    for expected in (True, False):
        recorded = await transcript.record_inbound(
            contact_id,
            wamid="wamid.IN1",
            kind="text",
            text="STOP",
            payload_json='{"body": "STOP"}',
            occurred_at=T0,
        )
        assert recorded is expected

    rows = await _rows(sessions, "inbound")
    assert len(rows) == 1
    row = rows[0]
    assert (row.contact_id, row.kind, row.text, row.payload_json) == (
        contact_id,
        "text",
        "STOP",
        '{"body": "STOP"}',
    )
    assert row.recorded_at.tzinfo is not None


async def test_inbound_items_without_a_wamid_are_recorded(
    transcript: TranscriptRepository,
    sessions: async_sessionmaker[AsyncSession],
    contact_id: int,
) -> None:
    for _ in range(2):
        assert await transcript.record_inbound(
            contact_id,
            wamid=None,
            kind="user_preferences",
            text="marketing: stop",
            payload_json=None,
            occurred_at=T0,
        )
    assert [r.kind for r in await _rows(sessions, "inbound")] == ["user_preferences"] * 2


async def test_outbound_is_recorded_once_per_message_id(
    transcript: TranscriptRepository,
    sessions: async_sessionmaker[AsyncSession],
    contact_id: int,
) -> None:
    for expected in (True, False):
        recorded = await transcript.record_outbound(
            contact_id,
            message_id="msg-1",
            kind="template",
            text=None,
            payload_json='{"template": "order_shipped"}',
            status="queued",
            occurred_at=T0,
        )
        assert recorded is expected
    rows = await _rows(sessions, "outbound")
    assert [(r.message_id, r.status, r.kind) for r in rows] == [("msg-1", "queued", "template")]


async def test_same_wamid_inbound_and_status_do_not_collide(
    transcript: TranscriptRepository, contact_id: int
) -> None:
    assert await transcript.record_inbound(
        contact_id, wamid="wamid.X", kind="text", text="hi", payload_json=None, occurred_at=T0
    )
    assert await transcript.record_status(wamid="wamid.X", status="read", occurred_at=T0)


async def test_status_rows_are_idempotent_and_advance_the_message(
    transcript: TranscriptRepository,
    sessions: async_sessionmaker[AsyncSession],
    contact_id: int,
) -> None:
    await _send(transcript, contact_id, "msg-1", "wamid.OUT1")

    assert await transcript.record_status(
        wamid="wamid.OUT1", status="delivered", occurred_at=T0 + timedelta(seconds=1)
    )
    assert not await transcript.record_status(
        wamid="wamid.OUT1", status="delivered", occurred_at=T0 + timedelta(seconds=1)
    )

    outbound = await transcript.get_outbound("msg-1")
    assert outbound is not None
    assert (outbound.status, outbound.wamid) == ("delivered", "wamid.OUT1")
    statuses = await _rows(sessions, "status")
    assert [(s.status, s.contact_id) for s in statuses] == [("delivered", contact_id)]


async def test_status_never_goes_backwards(
    transcript: TranscriptRepository, contact_id: int
) -> None:
    await _send(transcript, contact_id, "msg-1", "wamid.OUT1")

    await transcript.record_status(wamid="wamid.OUT1", status="read", occurred_at=T0)
    await transcript.record_status(wamid="wamid.OUT1", status="delivered", occurred_at=T0)
    await transcript.record_status(wamid="wamid.OUT1", status="sent", occurred_at=T0)
    assert await transcript.mark_outbound("msg-1", status="sent")

    outbound = await transcript.get_outbound("msg-1")
    assert outbound is not None and outbound.status == "read"


async def test_failed_is_terminal_and_keeps_the_error(
    transcript: TranscriptRepository, contact_id: int
) -> None:
    await _send(transcript, contact_id, "msg-1", "wamid.OUT1")

    await transcript.record_status(
        wamid="wamid.OUT1",
        status="failed",
        error_code=131026,
        error_title="Message undeliverable",
        occurred_at=T0,
    )
    await transcript.record_status(wamid="wamid.OUT1", status="read", occurred_at=T0)
    await transcript.mark_outbound("msg-1", status="delivered")

    outbound = await transcript.get_outbound("msg-1")
    assert outbound is not None
    assert (outbound.status, outbound.error_code, outbound.error_title) == (
        "failed",
        131026,
        "Message undeliverable",
    )


async def test_a_status_arriving_before_the_wamid_is_known_is_applied_later(
    transcript: TranscriptRepository,
    sessions: async_sessionmaker[AsyncSession],
    contact_id: int,
) -> None:
    await transcript.record_outbound(
        contact_id,
        message_id="msg-1",
        kind="text",
        text="hello",
        payload_json=None,
        status="queued",
        occurred_at=T0,
    )
    assert await transcript.record_status(wamid="wamid.EARLY", status="delivered", occurred_at=T0)
    assert [s.contact_id for s in await _rows(sessions, "status")] == [None]

    await transcript.mark_outbound("msg-1", status="sent", wamid="wamid.EARLY")

    outbound = await transcript.get_outbound("msg-1")
    assert outbound is not None and outbound.status == "delivered"


async def test_sending_failure_is_marked_on_the_message(
    transcript: TranscriptRepository, contact_id: int
) -> None:
    await transcript.record_outbound(
        contact_id,
        message_id="msg-1",
        kind="text",
        text="hello",
        payload_json=None,
        status="queued",
        occurred_at=T0,
    )
    assert await transcript.mark_outbound(
        "msg-1", status="failed", error_code=131047, error_title="Re-engagement message"
    )
    outbound = await transcript.get_outbound("msg-1")
    assert outbound is not None
    assert (outbound.status, outbound.error_code) == ("failed", 131047)
    assert await transcript.mark_outbound("msg-unknown", status="sent") is False


async def test_list_for_contact_orders_and_pages(
    transcript: TranscriptRepository, contacts: ContactRepository, contact_id: int
) -> None:
    other = await contacts.resolve(wa_id="15550000000", user_id=None)
    assert other.id is not None
    await transcript.record_inbound(
        other.id, wamid="wamid.OTHER", kind="text", text="x", payload_json=None, occurred_at=T0
    )
    # Recorded out of order; two share a timestamp and are then ordered by id.
    for minute, wamid in ((2, "wamid.C"), (0, "wamid.A"), (1, "wamid.B1"), (1, "wamid.B2")):
        await transcript.record_inbound(
            contact_id,
            wamid=wamid,
            kind="text",
            text=wamid,
            payload_json=None,
            occurred_at=T0 + timedelta(minutes=minute),
        )

    everything = await transcript.list_for_contact(contact_id)
    assert [e.wamid for e in everything] == ["wamid.A", "wamid.B1", "wamid.B2", "wamid.C"]
    latest_two = await transcript.list_for_contact(contact_id, limit=2)
    assert [e.wamid for e in latest_two] == ["wamid.B2", "wamid.C"]
    older = await transcript.list_for_contact(contact_id, before=T0 + timedelta(minutes=1))
    assert [e.wamid for e in older] == ["wamid.A"]


async def test_timestamps_round_trip_as_aware_utc(
    transcript: TranscriptRepository,
    engine: AsyncEngine,
    contact_id: int,
) -> None:
    paris = timezone(timedelta(hours=2))
    local = datetime(2025, 6, 1, 14, 30, 15, 123456, tzinfo=paris)
    await transcript.record_inbound(
        contact_id, wamid="wamid.TZ", kind="text", text="x", payload_json=None, occurred_at=local
    )

    [entry] = await transcript.list_for_contact(contact_id)
    assert entry.occurred_at == local
    assert entry.occurred_at.utcoffset() == timedelta(0)
    assert entry.occurred_at.hour == 12
    # Filtering by an aware bound in another zone compares instants, not wall clocks.
    assert await transcript.list_for_contact(contact_id, before=local) == []
    assert len(await transcript.list_for_contact(contact_id, before=local + timedelta(0, 1))) == 1

    async with engine.connect() as connection:
        stored = (
            await connection.execute(
                text("SELECT occurred_at FROM transcript_entries WHERE wamid = 'wamid.TZ'")
            )
        ).scalar_one()
    if engine.dialect.name == "sqlite":
        assert str(stored).startswith("2025-06-01 12:30:15.123456")
    else:
        assert stored == local


async def test_naive_datetimes_are_refused(
    transcript: TranscriptRepository,
    sessions: async_sessionmaker[AsyncSession],
    contact_id: int,
) -> None:
    naive = datetime(2025, 6, 1, 14, 30)
    with pytest.raises(ValueError, match="timezone-aware"):
        await transcript.record_inbound(
            contact_id, wamid="wamid.N", kind="text", text="x", payload_json=None, occurred_at=naive
        )
    with pytest.raises(ValueError, match="timezone-aware"):
        await transcript.list_for_contact(contact_id, before=naive)
    async with sessions() as session:
        count = await session.exec(select(func.count()).select_from(TranscriptEntry))
        assert count.one() == 0

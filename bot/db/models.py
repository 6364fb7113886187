"""Tables for contacts, their identity history and the conversation transcript.

A WhatsApp customer may be known by a phone-number id (``wa_id``), by a business-scoped user id
(BSUID, ``user_id``) or by both, learnt at different times; numbers change and get recycled.
``Contact`` holds the identifiers that are current, ``ContactIdentity`` keeps every identifier a
contact ever had with its validity period so an old number still resolves and the history can be
shown. ``TranscriptEntry`` is what was said and what happened to it, with unique indexes that make
recording a redelivered webhook a no-op.

Timestamps are timezone-aware UTC in Python on every backend (see ``UTCDateTime``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

IdentityKind = Literal["wa_id", "user_id"]
IDENTITY_KINDS: Final[tuple[IdentityKind, ...]] = ("wa_id", "user_id")

#: ``flow`` rows are the conversation's steps (``TranscriptRepository.record_flow_step``).
Direction = Literal["inbound", "outbound", "status", "flow"]

#: Outbound statuses in the order a message moves through them; ``failed`` is terminal and
#: outranks everything, so a late "read" never overwrites it.
OUTBOUND_STATUS_RANK: Final[dict[str, int]] = {
    "queued": 0,
    "sandbox": 1,
    "sent": 1,
    "delivered": 2,
    "read": 3,
    "played": 4,
    "failed": 100,
    "refused": 100,  # the consent gate stopped it: never sent
}

CONTACTS_TABLE: Final = "contacts"
IDENTITIES_TABLE: Final = "contact_identities"
TRANSCRIPT_TABLE: Final = "transcript_entries"

# 64-bit ids on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current instant as an aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always an aware UTC ``datetime`` in Python.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as naive
    UTC there and the zone is put back on read. Naive datetimes are refused on write: guessing
    their zone is how transcripts end up an hour off.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Contact(SQLModel, table=True):
    """A customer, under whichever identifiers are current for them.

    At least one of ``wa_id`` and ``user_id`` is set; each is unique among current contacts.
    """

    __tablename__ = CONTACTS_TABLE
    __table_args__ = (
        CheckConstraint(
            "wa_id IS NOT NULL OR user_id IS NOT NULL", name="ck_contacts_has_identifier"
        ),
        Index("uq_contacts_wa_id", "wa_id", unique=True),
        Index("uq_contacts_user_id", "user_id", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    wa_id: str | None = Field(default=None, sa_type=String(32))
    user_id: str | None = Field(default=None, sa_type=String(64))
    parent_user_id: str | None = Field(default=None, sa_type=String(64))
    username: str | None = Field(default=None, sa_type=String(64))
    profile_name: str | None = Field(default=None, sa_type=String(256))
    locale: str | None = Field(default=None, sa_type=String(16))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ContactIdentity(SQLModel, table=True):
    """One identifier a contact had, and when: ``valid_to`` is NULL while it is current.

    A partial unique index lets only one contact hold an identifier at a time, while closed
    periods stay behind as history (a recycled number has several).
    """

    __tablename__ = IDENTITIES_TABLE
    __table_args__ = (
        Index("ix_contact_identities_contact_id", "contact_id"),
        Index("ix_contact_identities_kind_value", "kind", "value"),
        Index(
            "uq_contact_identities_current",
            "kind",
            "value",
            unique=True,
            sqlite_where=text("valid_to IS NULL"),
            postgresql_where=text("valid_to IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(
        sa_type=Integer,
        sa_column_args=[ForeignKey(f"{CONTACTS_TABLE}.id", ondelete="CASCADE")],
        nullable=False,
    )
    kind: str = Field(sa_type=String(16), nullable=False)
    value: str = Field(sa_type=String(64), nullable=False)
    valid_from: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    valid_to: datetime | None = Field(default=None, sa_type=UTCDateTime)


class TranscriptEntry(SQLModel, table=True):
    """One message, outbound attempt or delivery status in a contact's conversation.

    ``payload_json`` is the project's own JSON for the entry (never Meta's raw webhook).
    Recording is idempotent through partial unique indexes: inbound rows on ``wamid``, outbound
    rows on ``message_id`` (our id), status rows on ``(wamid, status)``, flow steps on
    ``message_id`` (``flow:`` and a digest of the event that caused the step).
    """

    __tablename__ = TRANSCRIPT_TABLE
    __table_args__ = (
        Index("ix_transcript_entries_contact_occurred", "contact_id", "occurred_at", "id"),
        Index("ix_transcript_entries_wamid", "wamid"),
        Index(
            "uq_transcript_entries_inbound_wamid",
            "wamid",
            unique=True,
            sqlite_where=text("direction = 'inbound'"),
            postgresql_where=text("direction = 'inbound'"),
        ),
        Index("uq_transcript_entries_message_id", "message_id", unique=True),
        Index(
            "uq_transcript_entries_status",
            "wamid",
            "status",
            unique=True,
            sqlite_where=text("direction = 'status'"),
            postgresql_where=text("direction = 'status'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=_BIG_ID)
    contact_id: int | None = Field(
        default=None,
        sa_type=Integer,
        sa_column_args=[ForeignKey(f"{CONTACTS_TABLE}.id", ondelete="CASCADE")],
    )
    direction: str = Field(sa_type=String(16), nullable=False)
    kind: str = Field(sa_type=String(32), nullable=False)
    wamid: str | None = Field(default=None, sa_type=String(256))
    message_id: str | None = Field(default=None, sa_type=String(64))
    status: str | None = Field(default=None, sa_type=String(16))
    text: str | None = Field(default=None, sa_type=Text)
    payload_json: str | None = Field(default=None, sa_type=Text)
    error_code: int | None = Field(default=None, sa_type=Integer)
    error_title: str | None = Field(default=None, sa_type=Text)
    occurred_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)

"""Tables of the consent ledger, its current-state projection and the per-contact conversation.

``ConsentEvent`` is append-only evidence: each row records one consent decision with what was
shown and how it was captured, and carries a SHA-256 hash over its own content and the previous
row's hash. Rows form one chain per contact they were first written for (``chain``, which never
changes); ``contact_id`` says whom the row belongs to now and is re-pointed when two contacts are
merged, which is why it is kept out of the hash. ``LedgerHead`` is the last (seq, hash) of every
chain, updated in the same transaction as each append, so deleting the newest rows is detectable
as well as editing or deleting any other.

Rows and heads also carry an HMAC under a secret key kept outside the database
(``bot.db.ledger_keys``), so rewriting rows and moving a head needs the key, not just SQL access.

The hash covers the evidence and the idempotency key through their SHA-256 digests, not their
text, so erasing a contact's personal data (``bot.erasure``) can drop the evidence and replace the
key by its digest while every chain still verifies; evidence edited in place still shows, because
it no longer matches its digest.

``ConsentState`` is derived from the ledger (one row per contact and category) so the consent
gate reads one row instead of replaying history. ``Conversation`` is the flow's memory for one
contact, stored with the id of the last flow event applied so a redelivered event is a no-op.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from bot.db.models import CONTACTS_TABLE, UTCDateTime, utcnow

CONSENT_EVENTS_TABLE: Final = "consent_events"
LEDGER_HEADS_TABLE: Final = "ledger_heads"
CONSENT_STATES_TABLE: Final = "consent_states"
CONVERSATIONS_TABLE: Final = "conversations"

#: ``prev_hash`` of the first row of every chain.
GENESIS_HASH: Final = "0" * 64

#: Prefix of an event key replaced by its digest when the contact's personal data was erased.
ERASED_KEY_PREFIX: Final = "erased:"

#: The columns a row's hash covers: every column but ``id``, ``contact_id``, ``hash``,
#: ``evidence_json`` (covered through ``evidence_digest``) and ``erased_at``. ``event_key`` enters
#: the hash as its SHA-256 (``event_key_digest``).
HASHED_COLUMNS: Final = (
    "chain",
    "seq",
    "category",
    "action",
    "source",
    "method",
    "evidence_digest",
    "business_name",
    "policy_version",
    "occurred_at",
    "recorded_at",
    "event_key",
    "prev_hash",
)

# 64-bit ids on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


def canonical_json(value: Mapping[str, Any]) -> str:
    """The one JSON text of ``value``: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def sha256_hex(text: str) -> str:
    """SHA-256 (hex) of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def erased_event_key(event_key: str) -> str:
    """The form an event key takes once its contact was erased: its digest, nothing readable.

    Event keys may carry personal data (a Meta wamid encodes the customer's phone number).
    """
    if event_key.startswith(ERASED_KEY_PREFIX):
        return event_key
    return ERASED_KEY_PREFIX + sha256_hex(event_key)


def event_key_digest(event_key: str) -> str:
    """The SHA-256 of an event key as the row hash covers it, whether erased or not."""
    if event_key.startswith(ERASED_KEY_PREFIX):
        return event_key[len(ERASED_KEY_PREFIX) :]
    return sha256_hex(event_key)


def _hash_value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} in a ledger row")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def event_hash(values: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a ledger row given its column values (extra keys are ignored).

    The row is serialised as canonical JSON of exactly ``HASHED_COLUMNS``, timestamps as ISO 8601
    UTC with microseconds, so the same row hashes the same on every backend.
    """
    content = {name: _hash_value(values[name]) for name in HASHED_COLUMNS}
    content["event_key"] = event_key_digest(values["event_key"])
    return sha256_hex(canonical_json(content))


class ConsentEvent(SQLModel, table=True):
    """One consent decision, as evidence: never updated except for ``contact_id`` on a merge.

    ``action``, ``source`` and ``method`` hold values of the enums in ``flows.consent``;
    ``evidence_json`` is canonical JSON (wamid of the customer's message, the text shown,
    template, IP, user agent, document reference, agent and note, ...) and ``evidence_digest``
    its SHA-256. ``event_key`` is the caller's idempotency key: replaying the same decision
    writes nothing. Erasure sets ``evidence_json`` to NULL, ``erased_at`` to when, and
    ``event_key`` to ``erased_event_key(event_key)``; none of that changes the row's hash.
    """

    __tablename__ = CONSENT_EVENTS_TABLE
    __table_args__ = (
        Index("uq_consent_events_event_key", "event_key", unique=True),
        Index("uq_consent_events_chain_seq", "chain", "seq", unique=True),
        Index("ix_consent_events_contact_recorded", "contact_id", "recorded_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=_BIG_ID)
    contact_id: int = Field(
        sa_type=Integer,
        sa_column_args=[ForeignKey(f"{CONTACTS_TABLE}.id")],
        nullable=False,
    )
    chain: int = Field(sa_type=Integer, nullable=False)
    seq: int = Field(sa_type=Integer, nullable=False)
    category: str = Field(sa_type=String(64), nullable=False)
    action: str = Field(sa_type=String(16), nullable=False)
    source: str = Field(sa_type=String(32), nullable=False)
    method: str = Field(sa_type=String(32), nullable=False)
    evidence_json: str | None = Field(default=None, sa_type=Text)
    evidence_digest: str = Field(sa_type=String(64), nullable=False)
    business_name: str = Field(sa_type=Text, nullable=False)
    policy_version: str | None = Field(default=None, sa_type=String(64))
    occurred_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    recorded_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    event_key: str = Field(sa_type=String(256), nullable=False)
    prev_hash: str = Field(sa_type=String(64), nullable=False)
    hash: str = Field(sa_type=String(64), nullable=False)
    erased_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: HMAC-SHA256 of ``hash`` under the ledger key ``key_id`` (``bot.db.ledger_keys``); both
    #: NULL on rows written before the ledger was keyed.
    mac: str | None = Field(default=None, sa_type=String(64))
    key_id: str | None = Field(default=None, sa_type=String(32))

    def expected_hash(self) -> str:
        """The hash this row's content calls for; differs from ``hash`` if it was edited."""
        return event_hash({name: getattr(self, name) for name in HASHED_COLUMNS})

    def evidence_intact(self) -> bool:
        """The evidence kept matches its digest (True when it was erased: nothing to match)."""
        return self.evidence_json is None or sha256_hex(self.evidence_json) == self.evidence_digest


class LedgerHead(SQLModel, table=True):
    """The newest (seq, hash) of one chain; ``seq`` 0 and ``GENESIS_HASH`` before any row.

    No foreign key: the head outlives whatever happens to the rows and the contact, which is
    what makes a deleted tail (or a deleted chain) show up.
    """

    __tablename__ = LEDGER_HEADS_TABLE

    chain: int = Field(primary_key=True, sa_type=Integer, sa_column_kwargs={"autoincrement": False})
    seq: int = Field(sa_type=Integer, nullable=False)
    hash: str = Field(sa_type=String(64), nullable=False)
    #: HMAC-SHA256 of (chain, seq, hash) under the ledger key ``key_id``; NULL while unkeyed.
    mac: str | None = Field(default=None, sa_type=String(64))
    key_id: str | None = Field(default=None, sa_type=String(32))


class ConsentState(SQLModel, table=True):
    """Current status of one (contact, category), derived from the ledger by ``status_after``.

    ``since`` is when the event that set the status occurred; ``before_pending`` remembers the
    status a pending request will fall back to. ``source``, ``method`` and ``policy_version``
    come from ``last_event_id``, the event that last decided the status.
    """

    __tablename__ = CONSENT_STATES_TABLE
    __table_args__ = (Index("ix_consent_states_updated_at", "updated_at"),)

    contact_id: int = Field(
        primary_key=True,
        sa_type=Integer,
        sa_column_args=[ForeignKey(f"{CONTACTS_TABLE}.id", ondelete="CASCADE")],
        sa_column_kwargs={"autoincrement": False},
    )
    category: str = Field(primary_key=True, sa_type=String(64))
    status: str = Field(sa_type=String(16), nullable=False)
    before_pending: str | None = Field(default=None, sa_type=String(16))
    since: datetime = Field(sa_type=UTCDateTime, nullable=False)
    last_event_id: int = Field(
        sa_type=_BIG_ID,
        sa_column_args=[ForeignKey(f"{CONSENT_EVENTS_TABLE}.id")],
        nullable=False,
    )
    source: str = Field(sa_type=String(32), nullable=False)
    method: str = Field(sa_type=String(32), nullable=False)
    policy_version: str | None = Field(default=None, sa_type=String(64))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Conversation(SQLModel, table=True):
    """Where the conversation with one contact stands, and what it still has to do.

    ``data_json`` is the flow's memory, opaque here. ``outbox_json`` holds side effects decided
    together with the state but not yet carried out; it is cleared once they are.
    """

    __tablename__ = CONVERSATIONS_TABLE

    contact_id: int = Field(
        primary_key=True,
        sa_type=Integer,
        sa_column_args=[ForeignKey(f"{CONTACTS_TABLE}.id", ondelete="CASCADE")],
        sa_column_kwargs={"autoincrement": False},
    )
    state: str = Field(sa_type=String(64), nullable=False)
    token: str = Field(sa_type=String(128), nullable=False)
    data_json: str = Field(sa_type=Text, nullable=False)
    last_event_id: str = Field(sa_type=String(256), nullable=False)
    outbox_json: str | None = Field(default=None, sa_type=Text)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)

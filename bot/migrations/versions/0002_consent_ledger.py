"""Consent ledger, chain heads, consent states and conversations.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-23 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _contact_id(*, primary_key: bool = False, ondelete: str | None = None) -> sa.Column[object]:
    return sa.Column(
        "contact_id",
        sa.Integer(),
        sa.ForeignKey("contacts.id", ondelete=ondelete),
        primary_key=primary_key,
        autoincrement=False,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "consent_events",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        _contact_id(),
        sa.Column("chain", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("evidence_json", sa.Text(), nullable=True),
        sa.Column("evidence_digest", sa.String(length=64), nullable=False),
        sa.Column("business_name", sa.Text(), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=True),
        _timestamp("occurred_at"),
        _timestamp("recorded_at"),
        sa.Column("event_key", sa.String(length=256), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        _timestamp("erased_at", nullable=True),
    )
    op.create_index("uq_consent_events_event_key", "consent_events", ["event_key"], unique=True)
    op.create_index("uq_consent_events_chain_seq", "consent_events", ["chain", "seq"], unique=True)
    op.create_index(
        "ix_consent_events_contact_recorded",
        "consent_events",
        ["contact_id", "recorded_at", "id"],
        unique=False,
    )

    op.create_table(
        "ledger_heads",
        sa.Column("chain", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
    )

    op.create_table(
        "consent_states",
        _contact_id(primary_key=True, ondelete="CASCADE"),
        sa.Column("category", sa.String(length=64), primary_key=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("before_pending", sa.String(length=16), nullable=True),
        _timestamp("since"),
        sa.Column("last_event_id", _BIG_ID, sa.ForeignKey("consent_events.id"), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=True),
        _timestamp("updated_at"),
    )
    op.create_index("ix_consent_states_updated_at", "consent_states", ["updated_at"], unique=False)

    op.create_table(
        "conversations",
        _contact_id(primary_key=True, ondelete="CASCADE"),
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("token", sa.String(length=128), nullable=False),
        sa.Column("data_json", sa.Text(), nullable=False),
        sa.Column("last_event_id", sa.String(length=256), nullable=False),
        sa.Column("outbox_json", sa.Text(), nullable=True),
        _timestamp("updated_at"),
    )


def downgrade() -> None:
    op.drop_table("conversations")
    op.drop_table("consent_states")
    op.drop_table("ledger_heads")
    op.drop_table("consent_events")

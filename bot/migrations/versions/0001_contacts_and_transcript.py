"""Contacts, their identity history and the conversation transcript.

Revision ID: 0001
Revises:
Create Date: 2025-11-22 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("wa_id", sa.String(length=32), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("parent_user_id", sa.String(length=64), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("profile_name", sa.String(length=256), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "wa_id IS NOT NULL OR user_id IS NOT NULL", name="ck_contacts_has_identifier"
        ),
    )
    op.create_index("uq_contacts_wa_id", "contacts", ["wa_id"], unique=True)
    op.create_index("uq_contacts_user_id", "contacts", ["user_id"], unique=True)

    op.create_table(
        "contact_identities",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "contact_id",
            sa.Integer(),
            sa.ForeignKey("contacts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        _timestamp("valid_from"),
        _timestamp("valid_to", nullable=True),
    )
    op.create_index(
        "ix_contact_identities_contact_id", "contact_identities", ["contact_id"], unique=False
    )
    op.create_index(
        "ix_contact_identities_kind_value", "contact_identities", ["kind", "value"], unique=False
    )
    op.create_index(
        "uq_contact_identities_current",
        "contact_identities",
        ["kind", "value"],
        unique=True,
        sqlite_where=sa.text("valid_to IS NULL"),
        postgresql_where=sa.text("valid_to IS NULL"),
    )

    op.create_table(
        "transcript_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "contact_id",
            sa.Integer(),
            sa.ForeignKey("contacts.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("wamid", sa.String(length=256), nullable=True),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("payload_json", sa.Text(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_title", sa.Text(), nullable=True),
        _timestamp("occurred_at"),
        _timestamp("recorded_at"),
    )
    op.create_index(
        "ix_transcript_entries_contact_occurred",
        "transcript_entries",
        ["contact_id", "occurred_at", "id"],
        unique=False,
    )
    op.create_index("ix_transcript_entries_wamid", "transcript_entries", ["wamid"], unique=False)
    op.create_index(
        "uq_transcript_entries_inbound_wamid",
        "transcript_entries",
        ["wamid"],
        unique=True,
        sqlite_where=sa.text("direction = 'inbound'"),
        postgresql_where=sa.text("direction = 'inbound'"),
    )
    op.create_index(
        "uq_transcript_entries_message_id", "transcript_entries", ["message_id"], unique=True
    )
    op.create_index(
        "uq_transcript_entries_status",
        "transcript_entries",
        ["wamid", "status"],
        unique=True,
        sqlite_where=sa.text("direction = 'status'"),
        postgresql_where=sa.text("direction = 'status'"),
    )


def downgrade() -> None:
    op.drop_table("transcript_entries")
    op.drop_table("contact_identities")
    op.drop_table("contacts")

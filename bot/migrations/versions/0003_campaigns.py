"""Re-consent campaigns and their recipients.

Revision ID: 0003
Revises: 0002
Create Date: 2025-11-30 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("template_name", sa.String(length=512), nullable=False),
        sa.Column("template_language", sa.String(length=16), nullable=False),
        sa.Column("buttons_json", sa.Text(), nullable=False),
        sa.Column("body_parameters_json", sa.Text(), nullable=False),
        sa.Column("categories_json", sa.Text(), nullable=False),
        sa.Column("older_than_days", sa.Integer(), nullable=True),
        sa.Column("policy_below", sa.String(length=64), nullable=True),
        sa.Column("from_list", sa.Boolean(), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        _timestamp("deadline"),
        sa.Column("on_deadline", sa.String(length=8), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("daily_cap", sa.Integer(), nullable=True),
        sa.Column("optout_threshold", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("paused_by", sa.String(length=16), nullable=True),
        sa.Column("pause_reason", sa.Text(), nullable=True),
        sa.Column("audience_cursor", sa.Integer(), nullable=False),
        sa.Column("audience_done", sa.Boolean(), nullable=False),
        _timestamp("capped_until", nullable=True),
        _timestamp("created_at"),
        _timestamp("started_at", nullable=True),
        _timestamp("completed_at", nullable=True),
        _timestamp("updated_at"),
    )
    op.create_index("ix_campaigns_status", "campaigns", ["status"], unique=False)

    op.create_table(
        "campaign_recipients",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "campaign_id",
            sa.Integer(),
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "contact_id",
            sa.Integer(),
            sa.ForeignKey("contacts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("skip_reason", sa.String(length=32), nullable=True),
        sa.Column("categories_json", sa.Text(), nullable=True),
        sa.Column("wamid", sa.String(length=256), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_title", sa.Text(), nullable=True),
        _timestamp("claimed_at", nullable=True),
        _timestamp("updated_at"),
    )
    op.create_index(
        "ix_campaign_recipients_campaign_state",
        "campaign_recipients",
        ["campaign_id", "state", "id"],
        unique=False,
    )
    op.create_index(
        "ix_campaign_recipients_campaign_claimed",
        "campaign_recipients",
        ["campaign_id", "claimed_at"],
        unique=False,
    )
    op.create_index(
        "ix_campaign_recipients_contact", "campaign_recipients", ["contact_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("campaign_recipients")
    op.drop_table("campaigns")

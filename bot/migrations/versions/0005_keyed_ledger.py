"""Keyed consent ledger: an HMAC and the id of its key on every ledger row and chain head.

Existing rows and heads keep NULL in both: they were written unkeyed and are reported as such.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("consent_events", "ledger_heads")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("mac", sa.String(length=64), nullable=True))
        op.add_column(table, sa.Column("key_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("key_id")
            batch.drop_column("mac")

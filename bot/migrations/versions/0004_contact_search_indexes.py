"""Indexes for the console's case-insensitive name and username prefix search.

The console searches `lower(username)` and `lower(profile_name)` by prefix range; on PostgreSQL
the expressions are collated "C" (code point order) so a range scan can use them whatever the
database's collation. They are expression indexes, declared here only: the models cannot express
a dialect-specific collation, and Alembic's comparison skips expression indexes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("username", "profile_name")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for column in _COLUMNS:
        expression = f'(lower({column}) COLLATE "C")' if postgres else f"lower({column})"
        op.execute(
            f"CREATE INDEX IF NOT EXISTS ix_contacts_{column}_lower ON contacts ({expression})"
        )


def downgrade() -> None:
    for column in _COLUMNS:
        op.execute(f"DROP INDEX IF EXISTS ix_contacts_{column}_lower")

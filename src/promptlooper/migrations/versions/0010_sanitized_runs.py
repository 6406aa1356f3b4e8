"""Runs and cache entries say whether a model's text had to be changed to be stored.

A provider may answer text no database here can store (NUL, lone surrogates); it is now kept
with those characters replaced, and the run (and the cache entry that replays it) marked.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("runs", "response_cache")


def upgrade() -> None:
    # Plain ALTER TABLE on both databases (see 0009): no batch copy of ``runs``.
    for table in TABLES:
        op.add_column(
            table, sa.Column("sanitized", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "sanitized")

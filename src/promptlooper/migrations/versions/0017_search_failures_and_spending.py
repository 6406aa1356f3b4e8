"""Racing eliminates configs whose every run failed, and searches keep a spending ledger.

An elimination may now have a ``reason`` (``all runs failed``) instead of a paired test, so
its effect and p-value may be unknown. An experiment records what its adaptive search has
spent or committed to spend (``search_calls``, ``search_usd``, ``search_tokens``), written
before the calls it covers are made, so a search resumed after a crash never spends past its
budget on calls the dead process made but could not record.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEDGER = {"search_calls": sa.Integer(), "search_usd": sa.Float(), "search_tokens": sa.Integer()}


def upgrade() -> None:
    # SQLite cannot relax NOT NULL in place: batch mode copies the table there.
    with op.batch_alter_table("search_eliminations") as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=200), nullable=True))
        batch_op.alter_column("effect", existing_type=sa.Float(), nullable=True)
        batch_op.alter_column("p_value", existing_type=sa.Float(), nullable=True)
    with op.batch_alter_table("experiments") as batch_op:
        for name, kind in LEDGER.items():
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch_op:
        for name in LEDGER:
            batch_op.drop_column(name)
    op.execute("DELETE FROM search_eliminations WHERE effect IS NULL OR p_value IS NULL")
    with op.batch_alter_table("search_eliminations") as batch_op:
        batch_op.alter_column("effect", existing_type=sa.Float(), nullable=False)
        batch_op.alter_column("p_value", existing_type=sa.Float(), nullable=False)
        batch_op.drop_column("reason")

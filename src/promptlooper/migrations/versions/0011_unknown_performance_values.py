"""Performance records may leave token counts and cost out: unknown, not zero.

A record that did not say what a call cost was stored as free, and every mean over it was
wrong. Rows already stored keep their zeros: which of them were left out cannot be told now.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {"tokens_in": sa.Integer(), "tokens_out": sa.Integer(), "cost": sa.Float()}


def upgrade() -> None:
    # SQLite cannot relax NOT NULL in place: batch mode copies the table there.
    with op.batch_alter_table("performance_records") as batch_op:
        for name, kind in COLUMNS.items():
            batch_op.alter_column(name, existing_type=kind, nullable=True)


def downgrade() -> None:
    op.execute(
        "UPDATE performance_records SET tokens_in = COALESCE(tokens_in, 0), "
        "tokens_out = COALESCE(tokens_out, 0), cost = COALESCE(cost, 0)"
    )
    with op.batch_alter_table("performance_records") as batch_op:
        for name, kind in COLUMNS.items():
            batch_op.alter_column(name, existing_type=kind, nullable=False)

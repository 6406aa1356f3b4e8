"""CUPED for defined metrics: the metric option, and each unit's pre-exposure value.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("online_metrics") as batch:
        batch.add_column(
            sa.Column("cuped", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("online_unit_events") as batch:
        batch.add_column(sa.Column("pre_value", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("online_unit_events") as batch:
        batch.drop_column("pre_value")
    with op.batch_alter_table("online_metrics") as batch:
        batch.drop_column("cuped")

"""Cross-source ratio metrics: the denominator's kind, and each unit's sides per metric.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 20:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("online_metrics") as batch:
        batch.add_column(sa.Column("denominator_kind", sa.String(length=20), nullable=True))
    op.create_table(
        "online_unit_ratios",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        sa.Column("unit_id", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=36), nullable=False),
        sa.Column("exposed", sa.BigInteger(), nullable=False),
        sa.Column("served", sa.BigInteger(), nullable=False),
        sa.Column("numerator", sa.Float(), nullable=False),
        sa.Column("denominator", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "experiment_key",
            "variant_key",
            "unit_id",
            "metric",
            name=op.f("pk_online_unit_ratios"),
        ),
    )


def downgrade() -> None:
    op.drop_table("online_unit_ratios")
    with op.batch_alter_table("online_metrics") as batch:
        batch.drop_column("denominator_kind")

"""The defined metrics' running terms as they stood each UTC day, which the results' series
over time read (the server's upkeep keeps the day's picture).

Nothing older says how a term stood on earlier days, so the picture starts on the day this
revision runs: each existing ``online_metric_totals`` row becomes that day's row, and a
defined metric's series starts there, with all it had gathered before.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 04:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "online_metric_days",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        sa.Column("term", sa.String(length=60), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "experiment_key", "variant_key", "term", "day", name=op.f("pk_online_metric_days")
        ),
    )
    op.execute(
        sa.text(
            "INSERT INTO online_metric_days (experiment_key, variant_key, term, day, value) "
            "SELECT experiment_key, variant_key, term, :day, value FROM online_metric_totals"
        ).bindparams(sa.bindparam("day", datetime.now(UTC).date(), type_=sa.Date()))
    )


def downgrade() -> None:
    op.drop_table("online_metric_days")

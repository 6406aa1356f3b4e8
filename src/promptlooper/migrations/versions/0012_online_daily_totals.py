"""Online results by day: sessions first exposed and first converting per variant and UTC day,
filled from the events already stored, so the results' series over time never read events.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 21:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _day(expression: str) -> str:
    """The UTC day of a stored timestamp (SQLite keeps UTC text; PostgreSQL a timestamptz)."""
    if op.get_bind().dialect.name == "postgresql":
        return f"CAST(({expression}) AT TIME ZONE 'UTC' AS DATE)"
    return f"date({expression})"


def _backfill() -> None:
    """A session is exposed on the day of its first impression and converting on the later
    of that day and its first conversion's, as ingestion counts them."""
    first = (
        "SELECT experiment_key, variant_key, session_id,"
        " MIN(CASE WHEN event_type = 'impression' THEN created_at END) AS exposed_at,"
        " MIN(CASE WHEN event_type = 'conversion' THEN created_at END) AS converted_at"
        " FROM online_events GROUP BY experiment_key, variant_key, session_id"
    )
    converting_at = "CASE WHEN converted_at > exposed_at THEN converted_at ELSE exposed_at END"
    days = (
        f"SELECT experiment_key, variant_key, {_day('exposed_at')} AS day, 1 AS exposed,"
        " 0 AS converting FROM first WHERE exposed_at IS NOT NULL"
        f" UNION ALL SELECT experiment_key, variant_key, {_day(converting_at)}, 0, 1"
        " FROM first WHERE exposed_at IS NOT NULL AND converted_at IS NOT NULL"
    )
    op.execute(
        "INSERT INTO online_daily_totals (experiment_key, variant_key, day, exposed, converting)"
        f" WITH first AS ({first}), days AS ({days})"
        " SELECT experiment_key, variant_key, day, SUM(exposed), SUM(converting) FROM days"
        " GROUP BY experiment_key, variant_key, day"
    )


def upgrade() -> None:
    op.create_table(
        "online_daily_totals",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("exposed", sa.BigInteger(), nullable=False),
        sa.Column("converting", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "experiment_key", "variant_key", "day", name=op.f("pk_online_daily_totals")
        ),
    )
    _backfill()


def downgrade() -> None:
    op.drop_table("online_daily_totals")

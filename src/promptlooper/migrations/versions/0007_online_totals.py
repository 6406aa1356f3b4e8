"""Running totals of online events, filled from the events already stored.

Results now read these instead of grouping the events, so the index that served that grouping
goes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 10:12:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTED = {
    "impressions": "impression",
    "cta_clicks": "cta_click",
    "form_starts": "form_start",
    "form_submits": "form_submit",
    "conversions": "conversion",
}


def _count(event_type: str) -> str:
    return f"SUM(CASE WHEN event_type = '{event_type}' THEN 1 ELSE 0 END)"


_CONVERSION_VALUE = "COALESCE(SUM(CASE WHEN event_type = 'conversion' THEN value END), 0)"
"""The value totals count conversions' values only, as ingestion does."""


def _backfill() -> None:
    op.execute(
        "INSERT INTO online_session_tallies"
        " (experiment_key, variant_key, session_id, events, impressions, conversions, value)"
        " SELECT experiment_key, variant_key, session_id, COUNT(*),"
        f" {_count('impression')}, {_count('conversion')}, {_CONVERSION_VALUE}"
        " FROM online_events GROUP BY experiment_key, variant_key, session_id"
    )
    op.execute(
        "INSERT INTO online_session_arms (experiment_key, session_id, arms)"
        " SELECT experiment_key, session_id, COUNT(*) FROM online_session_tallies"
        " GROUP BY experiment_key, session_id"
    )
    op.execute(
        "INSERT INTO online_experiment_totals (experiment_key, sessions, multiple)"
        " SELECT experiment_key, COUNT(*), SUM(CASE WHEN arms > 1 THEN 1 ELSE 0 END)"
        " FROM online_session_arms GROUP BY experiment_key"
    )
    counted = ", ".join(f"{_count(kind)} AS {name}" for name, kind in _COUNTED.items())
    exposed = "impressions > 0"
    op.execute(
        "INSERT INTO online_variant_totals (experiment_key, variant_key,"
        f" {', '.join(_COUNTED)}, value_total,"
        " unique_sessions, exposed, converting, value_exposed, value_squares)"
        f" SELECT e.experiment_key, e.variant_key, {', '.join('e.' + n for n in _COUNTED)},"
        " e.value_total, s.unique_sessions, s.exposed, s.converting, s.value_exposed,"
        " s.value_squares"
        f" FROM (SELECT experiment_key, variant_key, {counted},"
        f" {_CONVERSION_VALUE} AS value_total FROM online_events"
        " GROUP BY experiment_key, variant_key) e"
        " JOIN (SELECT experiment_key, variant_key, COUNT(*) AS unique_sessions,"
        f" SUM(CASE WHEN {exposed} THEN 1 ELSE 0 END) AS exposed,"
        f" SUM(CASE WHEN {exposed} AND conversions > 0 THEN 1 ELSE 0 END) AS converting,"
        f" SUM(CASE WHEN {exposed} THEN value ELSE 0 END) AS value_exposed,"
        f" SUM(CASE WHEN {exposed} THEN value * value ELSE 0 END) AS value_squares"
        " FROM online_session_tallies GROUP BY experiment_key, variant_key) s"
        " ON s.experiment_key = e.experiment_key AND s.variant_key = e.variant_key"
    )


def upgrade() -> None:
    op.create_table(
        "online_experiment_totals",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("sessions", sa.BigInteger(), nullable=False),
        sa.Column("multiple", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("experiment_key", name=op.f("pk_online_experiment_totals")),
    )
    op.create_table(
        "online_session_arms",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("arms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "experiment_key", "session_id", name=op.f("pk_online_session_arms")
        ),
    )
    op.create_table(
        "online_session_tallies",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("impressions", sa.BigInteger(), nullable=False),
        sa.Column("conversions", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "experiment_key", "variant_key", "session_id", name=op.f("pk_online_session_tallies")
        ),
    )
    op.create_table(
        "online_variant_totals",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTED),
        sa.Column("value_total", sa.Float(), nullable=False),
        sa.Column("unique_sessions", sa.BigInteger(), nullable=False),
        sa.Column("exposed", sa.BigInteger(), nullable=False),
        sa.Column("converting", sa.BigInteger(), nullable=False),
        sa.Column("value_exposed", sa.Float(), nullable=False),
        sa.Column("value_squares", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "experiment_key", "variant_key", name=op.f("pk_online_variant_totals")
        ),
    )
    _backfill()
    with op.batch_alter_table("online_events", schema=None) as batch_op:
        batch_op.drop_index("ix_online_events_experiment_variant_session")


def downgrade() -> None:
    with op.batch_alter_table("online_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_online_events_experiment_variant_session",
            ["experiment_key", "variant_key", "session_id"],
            unique=False,
        )
    op.drop_table("online_variant_totals")
    op.drop_table("online_session_tallies")
    op.drop_table("online_session_arms")
    op.drop_table("online_experiment_totals")

"""Recompute the built-in value totals from the stored events: conversions' values only.

Revision 0007 first filled the running totals with every event's value (a cost on an
``llm_call``, a score), where the built-in value per session counts conversions' values only,
as ingestion does. 0007 was corrected later, but a database that had run the first version
keeps the inflated numbers: each session's ``value`` and each variant's ``value_total``,
``value_exposed`` and ``value_squares``. This recomputes them from the events (which are never
deleted), so it gives the same numbers on a database that was right already and can run again.

The per-session sums go through a keyed working table: the events have no index by session
since 0007, and the updates then look each session up by its key rather than scan the events
once per session.

Revision ID: 0019
Revises: 0017
Create Date: 2026-12-06 16:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WORK = "online_conversion_values_0019"
_SESSION = (
    "{t}.experiment_key = online_session_tallies.experiment_key"
    " AND {t}.variant_key = online_session_tallies.variant_key"
    " AND {t}.session_id = online_session_tallies.session_id"
)
_VARIANT = (
    "{t}.experiment_key = online_variant_totals.experiment_key"
    " AND {t}.variant_key = online_variant_totals.variant_key"
)


def _exposed_sum(expression: str) -> str:
    """A sum over the variant's exposed sessions (an impression), as ingestion keeps it."""
    return (
        f"COALESCE((SELECT SUM({expression}) FROM online_session_tallies s"
        f" WHERE {_VARIANT.format(t='s')} AND s.impressions > 0), 0)"
    )


def upgrade() -> None:
    op.create_table(
        _WORK,
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("experiment_key", "variant_key", "session_id"),
    )
    op.execute(
        f"INSERT INTO {_WORK} (experiment_key, variant_key, session_id, value)"
        " SELECT experiment_key, variant_key, session_id, SUM(value) FROM online_events"
        " WHERE event_type = 'conversion' AND value IS NOT NULL"
        " GROUP BY experiment_key, variant_key, session_id"
    )
    op.execute(
        "UPDATE online_session_tallies SET value = COALESCE("
        f"(SELECT w.value FROM {_WORK} w WHERE {_SESSION.format(t='w')}), 0)"
    )
    op.execute(
        "UPDATE online_variant_totals SET"
        f" value_total = COALESCE((SELECT SUM(w.value) FROM {_WORK} w"
        f" WHERE {_VARIANT.format(t='w')}), 0),"
        f" value_exposed = {_exposed_sum('s.value')},"
        f" value_squares = {_exposed_sum('s.value * s.value')}"
    )
    op.drop_table(_WORK)


def downgrade() -> None:
    """Nothing to undo: the recomputed totals are the right ones under every revision."""

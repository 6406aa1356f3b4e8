"""A CUPED metric's covariate is the value of a unit's events in a window of days before its
first exposure (``cuped_window_days``, 14 unless set), not everything before it.

Each exposed session's covariate per event name and window gets its own row
(``online_unit_covariates``), and the events a session sends before any impression wait in
``online_pending_events`` until its first impression says which window they fall in. The
existing CUPED metrics get the default window; their exposed sessions' covariates come from
the stored events stamped within 14 days before the session's first impression, the waiting
events of the sessions not exposed yet from their stored events, and the variants' covariate
terms are rebuilt from both. The downgrade puts back the terms of everything sent before
exposure, which the unit rows still hold.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 20:30:00.000000
"""

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WINDOW = 14
SESSION = ("experiment_key", "variant_key", "session_id")
_TERMS = sa.table(
    "online_metric_totals", *(sa.column(c) for c in ("experiment_key", "variant_key", "term"))
)


def _sql(statement: str, **params: object) -> sa.CursorResult:
    return op.get_bind().execute(sa.text(statement), params)


def _utc(moment: datetime | str) -> datetime:
    """A stored timestamp as aware UTC (SQLite gives back text without a zone)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _backfill(source: str) -> None:
    """The covariates of the sessions of one CUPED metric's source, the waiting events of
    those not exposed yet, and the variants' covariate terms."""
    exposed: dict[tuple[str, str, str], tuple[datetime, float]] = {}
    waiting: set[tuple[str, str, str]] = set()
    rows = _sql(
        "SELECT u.experiment_key, u.variant_key, u.session_id, u.value - u.pre_value,"
        " t.exposed_at FROM online_unit_events AS u JOIN online_session_tallies AS t"
        " ON u.experiment_key = t.experiment_key AND u.variant_key = t.variant_key"
        " AND u.session_id = t.session_id WHERE u.event_type = :source",
        source=source,
    )
    for key, variant, session_id, value, since in rows:
        if since is None:
            waiting.add((key, variant, session_id))
        else:
            exposed[(key, variant, session_id)] = (_utc(since), float(value))
    covariates: defaultdict[tuple[str, str, str], float] = defaultdict(float)
    pending: defaultdict[tuple[str, str, str, datetime], float] = defaultdict(float)
    events = _sql(
        "SELECT experiment_key, variant_key, session_id, created_at, value FROM online_events"
        " WHERE event_type = :source",
        source=source,
    )
    for key, variant, session_id, moment, value in events:
        unit, amount, moment = (
            (key, variant, session_id),
            1.0 if value is None else value,
            _utc(moment),
        )
        if unit in waiting:
            pending[(*unit, moment)] += amount
        elif unit in exposed:
            since = exposed[unit][0]
            if since - timedelta(days=WINDOW) <= moment < since:
                covariates[unit] += amount
    if covariates:
        op.bulk_insert(
            _table("online_unit_covariates"),
            [dict(zip(SESSION, unit, strict=True))
             | {"event_type": source, "window_days": WINDOW, "value": value}
             for unit, value in sorted(covariates.items())],
        )  # fmt: skip
    if pending:
        op.bulk_insert(
            _table("online_pending_events"),
            [dict(zip(SESSION, key[:3], strict=True))
             | {"event_type": source, "created_at": key[3], "value": value}
             for key, value in sorted(pending.items())],
        )  # fmt: skip
    terms: defaultdict[tuple[str, str, str], float] = defaultdict(float)
    for unit, (_, value) in exposed.items():
        pre = covariates.get(unit, 0.0)
        for suffix, amount in (("p", pre), ("pp", pre * pre), ("vp", value * pre)):
            terms[(unit[0], unit[1], f"{source}:{suffix}{WINDOW}")] += amount
    if terms:
        op.bulk_insert(
            _table("online_metric_totals"),
            [{"experiment_key": k, "variant_key": v, "term": t, "value": x}
             for (k, v, t), x in sorted(terms.items())],
        )  # fmt: skip


def _table(name: str) -> sa.Table:
    return sa.Table(name, sa.MetaData(), autoload_with=op.get_bind())


def _drop_terms(pattern: str) -> None:
    """Drop the event-metric terms whose suffix matches ``pattern``."""
    found = _sql("SELECT DISTINCT term FROM online_metric_totals WHERE term NOT LIKE 'perf:%'")
    names = [t for (t,) in found if re.fullmatch(rf"[^:]+:{pattern}", t)]
    if names:
        op.execute(sa.delete(_TERMS).where(_TERMS.c.term.in_(names)))


def upgrade() -> None:
    with op.batch_alter_table("online_metrics") as batch:
        batch.add_column(sa.Column("cuped_window_days", sa.Integer(), nullable=True))
    op.create_table(
        "online_unit_covariates",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            *SESSION, "event_type", "window_days", name=op.f("pk_online_unit_covariates")
        ),
    )
    op.create_table(
        "online_pending_events",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            *SESSION, "event_type", "created_at", name=op.f("pk_online_pending_events")
        ),
    )
    _sql("UPDATE online_metrics SET cuped_window_days = :days WHERE cuped", days=WINDOW)
    _drop_terms("(p|pp|vp)")
    sources = _sql(
        "SELECT DISTINCT source FROM online_metrics WHERE cuped AND kind = 'event'"
    ).scalars()
    for source in sorted(sources):
        _backfill(source)


def downgrade() -> None:
    op.drop_table("online_pending_events")
    op.drop_table("online_unit_covariates")
    with op.batch_alter_table("online_metrics") as batch:
        batch.drop_column("cuped_window_days")
    _drop_terms(r"(p|pp|vp)\d+")
    p, v = "u.pre_value", "(u.value - u.pre_value)"
    for term, amount in (("p", p), ("pp", f"{p} * {p}"), ("vp", f"{v} * {p}")):
        _sql(
            "INSERT INTO online_metric_totals (experiment_key, variant_key, term, value)"
            f" SELECT u.experiment_key, u.variant_key, u.event_type || '\\:{term}', SUM({amount})"
            " FROM online_unit_events AS u JOIN online_session_tallies AS t"
            " ON u.experiment_key = t.experiment_key AND u.variant_key = t.variant_key"
            " AND u.session_id = t.session_id"
            " WHERE t.impressions > 0 GROUP BY u.experiment_key, u.variant_key, u.event_type"
        )

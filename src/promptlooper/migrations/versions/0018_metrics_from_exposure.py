"""Defined metrics count what a unit did from its first exposure on; performance fields share
one row per unit.

A session's tally keeps the time of its earliest impression (``exposed_at``), and each
session's row of a tracked event name how many of its events came before it
(``pre_count``, beside ``pre_value``): a metric counts the events from exposure on, the
earlier ones are only CUPED's covariate. The stored rows get both from the stored events:
the events stored from a session's first impression on (by timestamp) are its metric's, the
rest of what its row holds came before. A row counts only the events stored since its
metric was defined, so the events it misses are taken to be its earliest ones. The variants'
event-metric terms are then rebuilt from the rows. Performance fields move from one
``online_unit_events`` row per unit and field to one ``online_unit_calls`` row per unit;
their terms do not change.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 16:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIELDS = ("cost", "latency_ms", "tokens_in", "tokens_out", "success", "quality")
SESSION = ("experiment_key", "variant_key", "session_id")


def _sql(statement: str) -> None:
    """Run plain SQL whose colons are text (``'perf:calls'``), not bound parameters."""
    op.execute(sa.text(statement.replace(":", "\\:")))


def _same_session(left: str, right: str) -> str:
    return " AND ".join(f"{left}.{c} = {right}.{c}" for c in SESSION)


def _greatest(amount: str) -> str:
    """``amount``, or 0 when it is negative."""
    return f"{'MAX' if op.get_bind().dialect.name == 'sqlite' else 'GREATEST'}({amount}, 0)"


def _rebuild_event_terms(count: str, value: str) -> None:
    """The event-metric terms of every variant, summed over its exposed sessions' rows, the
    metric's count and value given as SQL over a row ``u``."""
    _sql("DELETE FROM online_metric_totals WHERE term NOT LIKE 'perf:%'")
    n, v, p = f"CAST({count} AS FLOAT)", f"CAST({value} AS FLOAT)", "u.pre_value"
    terms = {
        "units": f"CASE WHEN {count} > 0 THEN 1.0 ELSE 0.0 END",
        "n": n, "v": v, "nn": f"{n} * {n}", "vv": f"{v} * {v}", "nv": f"{n} * {v}",
        "p": p, "pp": f"{p} * {p}", "vp": f"{v} * {p}",
    }  # fmt: skip
    selects = " UNION ALL ".join(
        f"SELECT u.experiment_key, u.variant_key, u.event_type || ':{term}', SUM({amount})"
        " FROM online_unit_events AS u JOIN online_session_tallies AS t"
        f" ON {_same_session('u', 't')}"
        " WHERE t.impressions > 0 AND u.event_type NOT LIKE 'perf:%'"
        " GROUP BY u.experiment_key, u.variant_key, u.event_type"
        for term, amount in terms.items()
    )
    _sql(f"INSERT INTO online_metric_totals (experiment_key, variant_key, term, value) {selects}")


def upgrade() -> None:
    with op.batch_alter_table("online_session_tallies") as batch:
        batch.add_column(sa.Column("exposed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("online_unit_events") as batch:
        batch.add_column(
            sa.Column("pre_count", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "online_unit_calls",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        sa.Column("unit_id", sa.String(length=200), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        *(
            column
            for field in FIELDS
            for column in (
                sa.Column(f"{field}_calls", sa.BigInteger(), nullable=False),
                sa.Column(field, sa.Float(), nullable=False),
            )
        ),
        sa.PrimaryKeyConstraint(
            "experiment_key", "variant_key", "unit_id", name=op.f("pk_online_unit_calls")
        ),
    )
    _sql(
        "UPDATE online_session_tallies SET exposed_at = f.earliest FROM"
        " (SELECT experiment_key, variant_key, session_id, MIN(created_at) AS earliest"
        "  FROM online_events WHERE event_type = 'impression'"
        "  GROUP BY experiment_key, variant_key, session_id) AS f"
        f" WHERE {_same_session('online_session_tallies', 'f')}"
    )

    # Performance fields: one row per unit.
    def field(name: str, column: str) -> str:
        return f"COALESCE(SUM(CASE WHEN event_type = 'perf:{name}' THEN {column} END), 0)"

    columns = ", ".join(f"{f}_calls, {f}" for f in FIELDS)
    sums = ", ".join(f"{field(f, 'count')}, {field(f, 'value')}" for f in FIELDS)
    _sql(
        f"INSERT INTO online_unit_calls (experiment_key, variant_key, unit_id, calls, {columns})"
        f" SELECT experiment_key, variant_key, session_id, {field('calls', 'count')}, {sums}"
        " FROM online_unit_events WHERE event_type LIKE 'perf:%'"
        " GROUP BY experiment_key, variant_key, session_id"
    )
    _sql("DELETE FROM online_unit_events WHERE event_type LIKE 'perf:%'")
    # Event names: what each session sent before its first impression is what its row holds
    # beyond the events stored from the impression on (everything, when it has none yet).
    _sql("UPDATE online_unit_events SET pre_count = count, pre_value = value")
    _sql(
        f"UPDATE online_unit_events SET pre_count = {_greatest('count - p.n')},"
        f" pre_value = {_greatest('value - p.v')} FROM"
        " (SELECT e.experiment_key, e.variant_key, e.session_id, e.event_type, COUNT(*) AS n,"
        "  SUM(COALESCE(e.value, 1)) AS v"
        f"  FROM online_events AS e JOIN online_session_tallies AS t ON {_same_session('e', 't')}"
        "  WHERE e.created_at >= t.exposed_at"
        "  GROUP BY e.experiment_key, e.variant_key, e.session_id, e.event_type) AS p"
        f" WHERE {_same_session('online_unit_events', 'p')}"
        " AND online_unit_events.event_type = p.event_type"
    )
    _rebuild_event_terms("(u.count - u.pre_count)", "(u.value - u.pre_value)")


def downgrade() -> None:
    for name in ("calls", *FIELDS):
        count, value = ("calls", "calls") if name == "calls" else (f"{name}_calls", name)
        _sql(
            "INSERT INTO online_unit_events"
            " (experiment_key, variant_key, session_id, event_type, count, value, pre_value)"
            f" SELECT experiment_key, variant_key, unit_id, 'perf:{name}', {count}, {value}, 0"
            f" FROM online_unit_calls WHERE {count} > 0"
        )
    op.drop_table("online_unit_calls")
    _rebuild_event_terms("u.count", "u.value")
    with op.batch_alter_table("online_unit_events") as batch:
        batch.drop_column("pre_count")
    with op.batch_alter_table("online_session_tallies") as batch:
        batch.drop_column("exposed_at")

"""Online metrics as definitions: the metric registry, experiments' secondary metrics, the
per-session and per-variant running totals of the events and calls the metrics measure, and
the unit and arm a performance record served.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 01:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "online_metrics",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=50), nullable=False),
        sa.Column("aggregation", sa.String(length=20), nullable=False),
        sa.Column("denominator", sa.String(length=50), nullable=True),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_online_metrics_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_online_metrics")),
        sa.UniqueConstraint("name", name=op.f("uq_online_metrics_name")),
    )
    op.create_table(
        "online_unit_events",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "experiment_key",
            "variant_key",
            "session_id",
            "event_type",
            name=op.f("pk_online_unit_events"),
        ),
    )
    op.create_table(
        "online_metric_totals",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        sa.Column("term", sa.String(length=60), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "experiment_key", "variant_key", "term", name=op.f("pk_online_metric_totals")
        ),
    )
    with op.batch_alter_table("online_experiments") as batch:
        batch.add_column(
            sa.Column(
                "secondary_metrics",
                sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                nullable=False,
                server_default="[]",
            )
        )

    with op.batch_alter_table("performance_records") as batch:
        batch.add_column(sa.Column("unit_id", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("experiment_key", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("arm_key", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("performance_records") as batch:
        batch.drop_column("arm_key")
        batch.drop_column("experiment_key")
        batch.drop_column("unit_id")
    with op.batch_alter_table("online_experiments") as batch:
        batch.drop_column("secondary_metrics")
    op.drop_table("online_metric_totals")
    op.drop_table("online_unit_events")
    op.drop_table("online_metrics")

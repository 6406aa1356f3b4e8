"""Online experiments: the registry, site settings, events and rejection counts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 16:03:07.315792
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "online_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("path", sa.String(length=2000), nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column(
            "metadata", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_online_events")),
        sa.UniqueConstraint(
            "experiment_key", "event_id", name=op.f("uq_online_events_experiment_key_event_id")
        ),
    )
    with op.batch_alter_table("online_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_online_events_experiment_variant_session",
            ["experiment_key", "variant_key", "session_id"],
            unique=False,
        )

    op.create_table(
        "online_experiments",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("cookie_name", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column(
            "eligible_routes",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("coverage", sa.Float(), nullable=False),
        sa.Column("hash_seed", sa.String(length=200), nullable=False),
        sa.Column("primary_metric", sa.String(length=50), nullable=False),
        sa.Column(
            "guardrail_metrics",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "variants", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_online_experiments")),
        sa.UniqueConstraint("experiment_key", name=op.f("uq_online_experiments_experiment_key")),
    )
    op.create_table(
        "online_rejections",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.String(length=50), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("experiment_key", "reason", name=op.f("pk_online_rejections")),
    )
    op.create_table(
        "site_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_name", sa.String(length=200), nullable=False),
        sa.Column("experiments_enabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site_settings")),
    )


def downgrade() -> None:
    op.drop_table("site_settings")
    op.drop_table("online_rejections")
    op.drop_table("online_experiments")
    with op.batch_alter_table("online_events", schema=None) as batch_op:
        batch_op.drop_index("ix_online_events_experiment_variant_session")

    op.drop_table("online_events")

"""Guardrails that stop an arm, and bandits: the experiment's type, auto-stop switch,
guardrail thresholds, bandit schedule, stopped arms and weights in force; the audit trail of
arms stopped and resumed; the history of traffic shares; a bandit's sticky assignments.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("online_experiments") as batch:
        batch.add_column(
            sa.Column("type", sa.String(length=20), nullable=False, server_default="ab")
        )
        batch.add_column(
            sa.Column("auto_stop", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("guardrail_thresholds", JSON, nullable=False, server_default="{}")
        )
        batch.add_column(sa.Column("bandit", JSON, nullable=True))
        batch.add_column(sa.Column("stopped_arms", JSON, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("weights", JSON, nullable=True))
    op.create_table(
        "online_arm_events",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_online_arm_events")),
    )
    op.create_index(
        op.f("ix_online_arm_events_experiment_key"), "online_arm_events", ["experiment_key"]
    )
    op.create_table(
        "online_weight_changes",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("weights", JSON, nullable=False),
        sa.Column("exposed", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_online_weight_changes")),
    )
    op.create_index(
        op.f("ix_online_weight_changes_experiment_key"),
        "online_weight_changes",
        ["experiment_key"],
    )
    op.create_table(
        "online_unit_assignments",
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("unit_id", sa.String(length=200), nullable=False),
        sa.Column("variant_key", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint(
            "experiment_key", "unit_id", name=op.f("pk_online_unit_assignments")
        ),
    )


def downgrade() -> None:
    op.drop_table("online_unit_assignments")
    op.drop_index(op.f("ix_online_weight_changes_experiment_key"), "online_weight_changes")
    op.drop_table("online_weight_changes")
    op.drop_index(op.f("ix_online_arm_events_experiment_key"), "online_arm_events")
    op.drop_table("online_arm_events")
    with op.batch_alter_table("online_experiments") as batch:
        for column in (
            "weights",
            "stopped_arms",
            "bandit",
            "guardrail_thresholds",
            "auto_stop",
            "type",
        ):
            batch.drop_column(column)

"""Agents, variants, config revisions and activation events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 14:33:42.963100
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "config", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_agents_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("project_id", "slug", name=op.f("uq_agents_project_id_slug")),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agents_project_id"), ["project_id"], unique=False)

    op.create_table(
        "variants",
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "overrides", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column(
            "origin", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_variants_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_variants")),
        sa.UniqueConstraint("agent_id", "slug", name=op.f("uq_variants_agent_id_slug")),
    )
    with op.batch_alter_table("variants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_variants_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(
            "uq_variants_one_active_per_agent",
            ["agent_id"],
            unique=True,
            sqlite_where=sa.text("is_active"),
            postgresql_where=sa.text("is_active"),
        )

    op.create_table(
        "activation_events",
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("from_variant_id", sa.Uuid(), nullable=True),
        sa.Column("to_variant_id", sa.Uuid(), nullable=True),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_activation_events_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_activation_events_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["from_variant_id"],
            ["variants.id"],
            name=op.f("fk_activation_events_from_variant_id_variants"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["to_variant_id"],
            ["variants.id"],
            name=op.f("fk_activation_events_to_variant_id_variants"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activation_events")),
    )
    with op.batch_alter_table("activation_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_activation_events_agent_id_created_at", ["agent_id", "created_at"], unique=False
        )

    op.create_table(
        "config_revisions",
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("variant_id", sa.Uuid(), nullable=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column(
            "values", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "changed_fields",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_config_revisions_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_config_revisions_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["variant_id"],
            ["variants.id"],
            name=op.f("fk_config_revisions_variant_id_variants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_revisions")),
    )
    with op.batch_alter_table("config_revisions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_config_revisions_agent_id_created_at", ["agent_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("config_revisions", schema=None) as batch_op:
        batch_op.drop_index("ix_config_revisions_agent_id_created_at")

    op.drop_table("config_revisions")
    with op.batch_alter_table("activation_events", schema=None) as batch_op:
        batch_op.drop_index("ix_activation_events_agent_id_created_at")

    op.drop_table("activation_events")
    with op.batch_alter_table("variants", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_variants_one_active_per_agent",
            sqlite_where=sa.text("is_active"),
            postgresql_where=sa.text("is_active"),
        )
        batch_op.drop_index(batch_op.f("ix_variants_agent_id"))

    op.drop_table("variants")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agents_project_id"))

    op.drop_table("agents")

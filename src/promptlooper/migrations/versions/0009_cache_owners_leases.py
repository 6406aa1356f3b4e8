"""The response cache belongs to projects and is bounded; experiments hold a lease while they run.

Cache entries now carry their project, their size and when they were last used. The entries
already stored are dropped, not carried over: they belong to no project, and their keys were
computed without the provider's type and endpoint, so no sweep would ever hit them again.

Experiments gain the cache choice of their last start (``use_cache``) and the lease of the
process executing them (``lease_owner``, ``lease_expires_at``). An experiment left ``running``
by an earlier version has no lease, so it counts as interrupted and can be started again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("response_cache")
    op.create_table(
        "response_cache",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_response_cache_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "key", name=op.f("pk_response_cache")),
    )
    op.create_index(
        op.f("ix_response_cache_last_used_at"), "response_cache", ["last_used_at"], unique=False
    )
    # Plain ALTER TABLE on both databases: SQLite adds and drops columns in place (3.35+),
    # where a batch copy of the table would cascade-delete every run on the way.
    op.add_column(
        "experiments",
        sa.Column("use_cache", sa.Boolean(), server_default=sa.true(), nullable=False),
    )
    op.add_column("experiments", sa.Column("lease_owner", sa.String(length=200), nullable=True))
    op.add_column(
        "experiments", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    for name in ("lease_expires_at", "lease_owner", "use_cache"):
        op.drop_column("experiments", name)
    op.drop_index(op.f("ix_response_cache_last_used_at"), table_name="response_cache")
    op.drop_table("response_cache")
    op.create_table(
        "response_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_hit_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_response_cache")),
    )

"""A guardrail's stop no longer changes the split of units the SRM check expects.

A stopped arm's units now count in the arm they are assigned (intent to treat), so the
weight history holds a bandit's weights only: the rows that stops and resumes added (the
control given the stopped arm's share) would make the check expect units the control no
longer gets. The audit trail of stops and resumes (``online_arm_events``) keeps them.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.text("DELETE FROM online_weight_changes WHERE reason IN ('stopped', 'resumed')"))


def downgrade() -> None:
    """Nothing to restore: the audit trail holds every stop and resume."""

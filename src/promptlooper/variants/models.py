"""Agents, variants, their revisions and activation events.

At most one variant per agent is active, and the database enforces it: a partial unique index
over ``variants(agent_id) WHERE is_active``, so no sequence of concurrent requests can leave
two active.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from promptlooper.auth.models import User
from promptlooper.db.base import Base, TimestampMixin, UUIDPrimaryKeyMixin, utcnow
from promptlooper.db.types import JSONType, UTCDateTime
from promptlooper.projects.models import Project


class Agent(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("project_id", "slug"),)

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(Project.id, ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    """The base config: every field, None where not set."""
    revision: Mapped[int] = mapped_column(Integer, default=1)


class Variant(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "variants"
    __table_args__ = (
        UniqueConstraint("agent_id", "slug"),
        Index(
            "uq_variants_one_active_per_agent",
            "agent_id",
            unique=True,
            sqlite_where=text("is_active"),
            postgresql_where=text("is_active"),
        ),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    overrides: Mapped[dict[str, Any]] = mapped_column(JSONType)
    """Only the overridden fields; an absent key inherits the agent's value."""
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    origin: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    revision: Mapped[int] = mapped_column(Integer, default=1)


class Revision(UUIDPrimaryKeyMixin, Base):
    """An immutable record of one effective change to an agent's base or a variant."""

    __tablename__ = "config_revisions"
    __table_args__ = (Index("ix_config_revisions_agent_id_created_at", "agent_id", "created_at"),)

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    variant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("variants.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    values: Mapped[dict[str, Any]] = mapped_column(JSONType)
    """The base config (agent) or the overrides (variant) after the change."""
    changed_fields: Mapped[list[str]] = mapped_column(JSONType)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(User.id, ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ActivationEvent(UUIDPrimaryKeyMixin, Base):
    __tablename__ = "activation_events"
    __table_args__ = (Index("ix_activation_events_agent_id_created_at", "agent_id", "created_at"),)

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    from_variant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("variants.id", ondelete="SET NULL")
    )
    to_variant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("variants.id", ondelete="SET NULL")
    )
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(User.id, ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PerformanceRecord(UUIDPrimaryKeyMixin, Base):
    """One served call: which variant and revision answered, how fast, how well, at what cost."""

    __tablename__ = "performance_records"
    __table_args__ = (
        Index("ix_performance_records_agent_id_created_at", "agent_id", "created_at"),
    )

    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    variant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("variants.id", ondelete="SET NULL")
    )
    revision: Mapped[str | None] = mapped_column(String(40))
    latency_ms: Mapped[float | None] = mapped_column(Float)
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[float | None] = mapped_column(Float)
    """Token counts and cost: None when the caller did not say (unknown, not zero)."""
    success: Mapped[bool] = mapped_column(Boolean, default=True)
    quality: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    unit_id: Mapped[str | None] = mapped_column(String(200))
    """The unit served (``resolve(unit_id=...)``), and the online experiment and arm it was
    assigned to then: the call counts toward that arm's performance metrics."""
    experiment_key: Mapped[str | None] = mapped_column(String(100))
    arm_key: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

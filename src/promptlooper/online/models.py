"""Online experiments, site settings, ingested events and rejection counts.

Online experiments are site-wide (managed by admins, served to anonymous traffic), so they are
keyed by ``experiment_key`` rather than filed under a project. Events reference experiments by
key, as browsers send them; an optional ``event_id`` makes a retried event a no-op through a
unique index.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from promptlooper.db.base import Base, TimestampMixin, UUIDPrimaryKeyMixin, utcnow
from promptlooper.db.types import JSONType, UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class OnlineExperiment(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "online_experiments"

    experiment_key: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    cookie_name: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(20), default="running")
    """draft, running or stopped; only a running, enabled experiment assigns and ingests."""
    eligible_routes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    coverage: Mapped[float] = mapped_column(Float, default=100.0)
    hash_seed: Mapped[str] = mapped_column(String(200))
    primary_metric: Mapped[str] = mapped_column(String(50), default="conversion")
    guardrail_metrics: Mapped[list[str]] = mapped_column(JSONType, default=list)
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    """In order, control first: variant_key, label, allocation (%), is_control,
    agent_variant_id (optional)."""
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SiteSettings(Base):
    """One row: the site's name and the global switch for online experiments."""

    __tablename__ = "site_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    site_name: Mapped[str] = mapped_column(String(200), default="")
    experiments_enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class ExperimentEvent(Base):
    __tablename__ = "online_events"
    __table_args__ = (
        Index(
            "ix_online_events_experiment_variant_session",
            "experiment_key",
            "variant_key",
            "session_id",
        ),
        UniqueConstraint("experiment_key", "event_id"),
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    experiment_key: Mapped[str] = mapped_column(String(100))
    variant_key: Mapped[str] = mapped_column(String(100))
    session_id: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(String(2000), default="")
    event_type: Mapped[str] = mapped_column(String(50))
    event_id: Mapped[str | None] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(Float)
    """A conversion's value (revenue, say)."""
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Rejection(Base):
    """How many events of an experiment were refused, by reason (the results' health)."""

    __tablename__ = "online_rejections"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    reason: Mapped[str] = mapped_column(String(50), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)

"""Experiments, their runs, each run's stage results and scores, and the response cache."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from promptlooper.db.base import Base, TimestampMixin, UUIDPrimaryKeyMixin, utcnow
from promptlooper.db.types import JSONType, UTCDateTime
from promptlooper.projects.models import Project


class Experiment(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "experiments"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(Project.id, ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    """The sweep document, self-contained (files inlined), as validated."""
    parameter_space: Mapped[dict[str, Any]] = mapped_column(JSONType)
    scoring_config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    """``{"weights": {scorer: weight}}``: how a run's scores combine into one number."""
    status: Mapped[str] = mapped_column(String(16), default="draft")
    total_runs: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)


class Run(UUIDPrimaryKeyMixin, Base):
    """One config applied to one dataset row (one repeat)."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("experiment_id", "config_hash", "row_index", "repeat"),
        Index("ix_runs_experiment_id_status", "experiment_id", "status"),
    )

    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE")
    )
    config_hash: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType)
    """The grid point: one value per parameter of the space."""
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    """The executable config: prompt/model/params, or pipeline_stages, plus input_data."""
    row_index: Mapped[int] = mapped_column(Integer, default=0)
    repeat: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StageResult(UUIDPrimaryKeyMixin, Base):
    __tablename__ = "stage_results"
    __table_args__ = (UniqueConstraint("run_id", "stage_index"),)

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    stage_index: Mapped[int] = mapped_column(Integer)
    prompt_sent: Mapped[str] = mapped_column(Text)
    system_sent: Mapped[str | None] = mapped_column(Text)
    response_raw: Mapped[str] = mapped_column(Text)
    model_used: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Score(UUIDPrimaryKeyMixin, Base):
    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("run_id", "scorer_name"),)

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    scorer_name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)


class CacheEntry(Base):
    """A provider response keyed by the hash of what produced it (shared by all sweeps)."""

    __tablename__ = "response_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    response: Mapped[str] = mapped_column(Text)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_hit_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

"""Experiments, their runs, each run's stage results and scores, and the response cache."""

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
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from promptlooper.db.base import Base, TimestampMixin, UUIDPrimaryKeyMixin, utcnow
from promptlooper.db.types import JSONType, UTCDateTime
from promptlooper.projects.models import Project


def interrupted_message(owner: str | None) -> str:
    """Why an experiment whose lease lapsed is no longer running."""
    where = f" ({owner})" if owner else ""
    return (
        f"interrupted: the process running it{where} stopped without finishing "
        "(it was killed, or lost the database); start resumes it"
    )


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
    use_cache: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    """The cache choice of the last start; a start that makes none resumes with it."""
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    """The process executing it (``host:pid:token``) while its status is ``running``."""
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Until when the owner's last heartbeat vouches for it; past this it is not running."""
    search_calls: Mapped[int | None] = mapped_column(Integer)
    """An adaptive search's spending ledger (with ``search_usd`` and ``search_tokens``): at
    least what its calls have cost, written before the calls it covers are made, so a resume
    after a crash counts calls that were in flight or not yet recorded. None: never written."""
    search_usd: Mapped[float | None] = mapped_column(Float)
    search_tokens: Mapped[int | None] = mapped_column(Integer)

    @property
    def lease_lapsed(self) -> bool:
        """Whether a ``running`` experiment's executor has stopped renewing its lease."""
        return self.status == "running" and (
            self.lease_expires_at is None or self.lease_expires_at <= utcnow()
        )

    @property
    def current_status(self) -> str:
        """The status as readers should see it: ``running`` only while a lease vouches for it."""
        return "interrupted" if self.lease_lapsed else self.status

    @property
    def current_error(self) -> str | None:
        return interrupted_message(self.lease_owner) if self.lease_lapsed else self.error


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
    sanitized: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Text of its stages (a model's answer, say) held characters the database cannot store
    (NUL, lone surrogates): they were replaced with U+FFFD."""
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
    """A provider response, keyed by the hash of what produced it, within one project: a
    sweep reads and fills only its own project's entries."""

    __tablename__ = "response_cache"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(Project.id, ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    response: Mapped[str] = mapped_column(Text)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    sanitized: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Replayed to a run, it marks the run ``sanitized`` as the original call did."""
    size: Mapped[int] = mapped_column(Integer)
    """The response's length in UTF-8 bytes: what ``CACHE_MAX_BYTES`` counts."""
    hits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    """When it was written or last served: the least recently used entries are evicted."""


class Elimination(UUIDPrimaryKeyMixin, Base):
    """A racing search's decision that a config is worse than the leader: what it was
    measured on, so the leaderboard can say why the config stopped and a resumed search
    keeps the decision."""

    __tablename__ = "search_eliminations"
    __table_args__ = (UniqueConstraint("experiment_id", "config_hash"),)

    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE")
    )
    config_hash: Mapped[str] = mapped_column(String(64))
    lost_to: Mapped[str] = mapped_column(String(64))
    """The leader's config hash when it was eliminated."""
    rows: Mapped[int] = mapped_column(Integer)
    """Dataset rows both configs had completed: what the paired test compared."""
    effect: Mapped[float | None] = mapped_column(Float)
    """Mean score difference, this config minus the leader (negative); None when no paired
    test decided it (see ``reason``)."""
    p_value: Mapped[float | None] = mapped_column(Float)
    """Holm-adjusted over that slice's comparisons with the leader; None as ``effect``."""
    reason: Mapped[str | None] = mapped_column(String(200))
    """Why it stopped when not by a paired test, e.g. ``all runs failed``."""
    slice_index: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

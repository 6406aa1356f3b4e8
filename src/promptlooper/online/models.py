"""Online experiments, site settings, ingested events, their running totals and rejection
counts.

Online experiments are site-wide (managed by admins, served to anonymous traffic), so they are
keyed by ``experiment_key`` rather than filed under a project. Events reference experiments by
key, as browsers send them; an optional ``event_id`` makes a retried event a no-op through a
unique index. The tallies and totals are kept up to date as events are stored
(``online/tallies.py``), so results never scan the events.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
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
    secondary_metrics: Mapped[list[str]] = mapped_column(JSONType, default=list)
    guardrail_metrics: Mapped[list[str]] = mapped_column(JSONType, default=list)
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    """In order, control first: variant_key, label, allocation (%), is_control,
    agent_variant_id (optional)."""
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    type: Mapped[str] = mapped_column(String(20), default="ab")
    """``ab`` (fixed allocations) or ``bandit`` (weights follow the primary metric)."""
    auto_stop: Mapped[bool] = mapped_column(Boolean, default=False)
    guardrail_thresholds: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    """Guardrail metric name → {threshold, scale}: how far an arm may move it the wrong way."""
    bandit: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    """A bandit's schedule and floor: every_exposures, every_seconds, floor."""
    stopped_arms: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    """Arms a guardrail stopped (variant key → why): their units are served control, and still
    count in their own arm."""
    weights: Mapped[list[float] | None] = mapped_column(JSONType)
    """A bandit's weights in force (fractions, in the order of ``variants``); None until the
    first update, when the allocations are the weights."""


class SiteSettings(Base):
    """One row: the site's name and the global switch for online experiments."""

    __tablename__ = "site_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    site_name: Mapped[str] = mapped_column(String(200), default="")
    experiments_enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class ExperimentEvent(Base):
    __tablename__ = "online_events"
    __table_args__ = (UniqueConstraint("experiment_key", "event_id"),)

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


class SessionTally(Base):
    """One session's events in one variant: enough to tell when it became exposed (its first
    impression) or converting, and what its value was before and after each write.
    ``exposed_at`` is the time of its earliest impression stored so far: the events of
    defined metrics sent before it are the session's pre-exposure events."""

    __tablename__ = "online_session_tallies"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    variant_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    events: Mapped[int] = mapped_column(BigInteger)
    impressions: Mapped[int] = mapped_column(BigInteger)
    conversions: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)
    exposed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SessionArms(Base):
    """In how many variants of an experiment a session was seen (multiple exposure)."""

    __tablename__ = "online_session_arms"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    arms: Mapped[int] = mapped_column(Integer)


class VariantTotals(Base):
    """A variant's counts and sums for the results: event counts by type, sessions, exposed
    (with an impression) and converting sessions, and value sums over exposed sessions."""

    __tablename__ = "online_variant_totals"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    variant_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    impressions: Mapped[int] = mapped_column(BigInteger)
    cta_clicks: Mapped[int] = mapped_column(BigInteger)
    form_starts: Mapped[int] = mapped_column(BigInteger)
    form_submits: Mapped[int] = mapped_column(BigInteger)
    conversions: Mapped[int] = mapped_column(BigInteger)
    value_total: Mapped[float] = mapped_column(Float)
    unique_sessions: Mapped[int] = mapped_column(BigInteger)
    exposed: Mapped[int] = mapped_column(BigInteger)
    converting: Mapped[int] = mapped_column(BigInteger)
    value_exposed: Mapped[float] = mapped_column(Float)
    value_squares: Mapped[float] = mapped_column(Float)


class ExperimentTotals(Base):
    """Sessions of an experiment, and how many of them were seen in more than one variant."""

    __tablename__ = "online_experiment_totals"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    sessions: Mapped[int] = mapped_column(BigInteger)
    multiple: Mapped[int] = mapped_column(BigInteger)


class DailyTotals(Base):
    """Per variant and UTC day: the sessions first exposed and first converting that day. The
    results' series over time add these up, reading at most one row per arm and day through
    the primary key instead of the events."""

    __tablename__ = "online_daily_totals"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    variant_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    exposed: Mapped[int] = mapped_column(BigInteger)
    converting: Mapped[int] = mapped_column(BigInteger)


class MetricDefinition(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    """A metric experiments name: what is measured per unit (``source``, an event name) and
    how it is summed up over an arm's exposed units (``aggregation``). Names are unique
    across the site, so an experiment's metric names never need a project to resolve."""

    __tablename__ = "online_metrics"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE")
    )
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(20), default="event")
    """``event``: ``source`` is a browser event name; ``performance``: a field of the agent
    performance log (cost, latency_ms, tokens_in, tokens_out, success, quality, calls)."""
    source: Mapped[str] = mapped_column(String(50))
    aggregation: Mapped[str] = mapped_column(String(20))
    """proportion, mean or ratio."""
    denominator: Mapped[str | None] = mapped_column(String(50))
    denominator_kind: Mapped[str | None] = mapped_column(String(20))
    """None: a ratio's denominator is its own source (value per event, cost per call);
    ``event`` or ``performance``: ``denominator`` names another source of that kind (cost per
    conversion), whose per-unit running totals are kept in ``UnitRatio``."""
    direction: Mapped[str] = mapped_column(String(10), default="higher")
    cuped: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A mean metric of browser events adjusted by the same metric before each unit's first
    exposure (``UnitCovariate``)."""
    cuped_window_days: Mapped[int | None] = mapped_column(Integer)
    """A CUPED metric's pre-exposure window: the days before a unit's first exposure whose
    events are its covariate (None when the metric is not CUPED)."""


class UnitEvents(Base):
    """One session's events of one name in one variant, for the names defined metrics
    measure: how many, and the sum of their values (an event without a value counts 1), all
    of them; ``pre_count`` and ``pre_value`` are those of the events sent before the
    session's first exposure. The metric counts the rest; the pre-exposure value is the
    covariate of a CUPED metric. Kept so later writes can move the session's share of the
    variant's terms without reading its events."""

    __tablename__ = "online_unit_events"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    variant_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(50), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)
    pre_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    pre_value: Mapped[float] = mapped_column(Float, server_default="0")


class UnitCovariate(Base):
    """One exposed session's CUPED covariate for one event name and pre-exposure window: the
    value of its pre-exposure events (``UnitEvents.pre_value``'s) stamped at most
    ``window_days`` days before its first impression. Kept so that later writes can move the
    session's share of the variant's terms without reading its events."""

    __tablename__ = "online_unit_covariates"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    variant_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(50), primary_key=True)
    window_days: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class PendingEvents(Base):
    """The events of a CUPED metric's source that a session sent before it had any
    impression, by timestamp: which of them fall in a pre-exposure window is only known once
    its first impression is stored, which reads them here (by the session's key) and deletes
    them. The raw events have no index by session, and need none."""

    __tablename__ = "online_pending_events"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    variant_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(50), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    """The sum of the values of its events stamped at that moment (an event without a value
    counts 1)."""


class UnitCalls(Base):
    """One unit's served calls in one arm of an experiment over agent variants, for the
    performance metrics: how many calls, and per field of the performance log how many calls
    gave it and the sum of their values. One row per unit holds every field, so a batch of
    records updates one row per unit."""

    __tablename__ = "online_unit_calls"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    variant_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    unit_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger)
    cost_calls: Mapped[int] = mapped_column(BigInteger)
    cost: Mapped[float] = mapped_column(Float)
    latency_ms_calls: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[float] = mapped_column(Float)
    tokens_in_calls: Mapped[int] = mapped_column(BigInteger)
    tokens_in: Mapped[float] = mapped_column(Float)
    tokens_out_calls: Mapped[int] = mapped_column(BigInteger)
    tokens_out: Mapped[float] = mapped_column(Float)
    success_calls: Mapped[int] = mapped_column(BigInteger)
    success: Mapped[float] = mapped_column(Float)
    quality_calls: Mapped[int] = mapped_column(BigInteger)
    quality: Mapped[float] = mapped_column(Float)


class UnitRatio(Base):
    """One unit's sides of one cross-source ratio metric (``metric``, its id) in one arm: the
    numerator and denominator it has added up since the metric was defined, and whether it
    counts as a unit (``exposed``: event writes that saw it exposed; ``served``: its calls).
    Both write paths add to this one row, whose lock orders them: each learns the row as it
    was before its own write, so the arm's sum of products numerator × denominator moves by
    exactly what the write changed, whichever side comes first."""

    __tablename__ = "online_unit_ratios"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    variant_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    unit_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    metric: Mapped[str] = mapped_column(String(36), primary_key=True)
    exposed: Mapped[int] = mapped_column(BigInteger)
    served: Mapped[int] = mapped_column(BigInteger)
    numerator: Mapped[float] = mapped_column(Float)
    denominator: Mapped[float] = mapped_column(Float)


class MetricTotals(Base):
    """A variant's sums over its exposed sessions for one event name (or performance field):
    the ``term`` is the sessions with the event from their first exposure on, or the sum of
    the per-session count and value of those events, their squares or their product, or of
    the pre-exposure value (``online/tallies.py`` names them) — the sufficient statistics of
    a proportion, a mean, a ratio and a CUPED metric."""

    __tablename__ = "online_metric_totals"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    variant_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    term: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class MetricDays(Base):
    """Each live experiment's ``MetricTotals`` terms as the server's upkeep last saw them on a
    UTC day: the results' series over time read a defined metric as it stood at each day's end
    (today's from the running totals themselves) without the events, and ingestion writes
    nothing more for it. A day the upkeep did not run carries the day before forward. Rows
    before revision 0023 all fall on the day it ran."""

    __tablename__ = "online_metric_days"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    variant_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    term: Mapped[str] = mapped_column(String(60), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class ArmEvent(UUIDPrimaryKeyMixin, Base):
    """The audit trail of arms stopped by a guardrail and resumed by hand."""

    __tablename__ = "online_arm_events"

    experiment_key: Mapped[str] = mapped_column(String(100), index=True)
    variant_key: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(20))
    """``stopped`` or ``resumed``."""
    metric: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    """For a stop: the threshold and the sequential test's lift, interval and p-value."""
    actor: Mapped[str] = mapped_column(String(200))
    """``guardrail`` for an automatic stop, else the user who acted."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WeightChange(UUIDPrimaryKeyMixin, Base):
    """A bandit's weights in force from ``created_at`` on. ``exposed`` is the experiment's
    exposed units at that moment, so the units exposed under each set of weights are known from
    the running totals (for the SRM check)."""

    __tablename__ = "online_weight_changes"

    experiment_key: Mapped[str] = mapped_column(String(100), index=True)
    weights: Mapped[dict[str, float]] = mapped_column(JSONType)
    """Variant key → share of new units assigned (fractions summing to 1)."""
    exposed: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(20))
    """``bandit``."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UnitAssignment(Base):
    """A bandit's unit and the arm it was first given: later weights never move it."""

    __tablename__ = "online_unit_assignments"

    experiment_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    unit_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    variant_key: Mapped[str] = mapped_column(String(100))

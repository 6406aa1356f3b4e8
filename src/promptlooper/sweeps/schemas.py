"""Request and response bodies for experiments, runs, leaderboards and the cache."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from promptlooper.types import RequestBody


class Progress(BaseModel):
    pending: int = 0
    completed: int = 0
    failed: int = 0
    cached: int = 0


class ExperimentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    description: str
    status: str = Field(
        description="draft, running, completed, cancelled, failed or interrupted (the process "
        "running it stopped without finishing: start resumes it)"
    )
    total_runs: int
    progress: Progress = Field(default_factory=Progress)
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None

    @classmethod
    def with_progress(cls, experiment: Any, counts: dict[str, int]) -> Self:
        """The experiment as the API shows it, with its run counts by status; one whose
        lease has lapsed shows as interrupted."""
        return cls.model_validate(experiment).model_copy(
            update={
                "progress": Progress(**counts),
                "status": experiment.current_status,
                "error": experiment.current_error,
            }
        )


class ExperimentDetail(ExperimentPublic):
    spec: dict[str, Any]
    parameter_space: dict[str, Any]
    scoring_config: dict[str, Any]


class ExperimentList(BaseModel):
    data: list[ExperimentPublic]
    count: int


class StartRequest(RequestBody):
    concurrency: int | None = Field(default=None, ge=1, le=4096)
    cache: bool | None = Field(
        default=None,
        description="Use the response cache; when left out, as the experiment's last start did "
        "(a new experiment: yes)",
    )


class StartResponse(BaseModel):
    id: uuid.UUID
    status: str
    started: bool = Field(description="False when it was already running (start is idempotent)")


class RunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    config_hash: str
    parameters: dict[str, Any]
    row_index: int
    repeat: int
    status: str
    error: str | None
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: float | None
    tokens_in: int
    tokens_out: int
    cost: float
    cached: bool
    sanitized: bool = Field(
        description="The run's text (a model's answer, say) held characters the database "
        "cannot store (NUL, lone surrogates): they were replaced with U+FFFD"
    )
    weighted_score: float | None = None


class StagePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    stage_index: int
    prompt_sent: str
    system_sent: str | None
    response_raw: str
    model_used: str
    provider: str
    params: dict[str, Any]
    tokens_in: int
    tokens_out: int
    latency_ms: float
    cost: float
    cached: bool


class RunDetail(RunPublic):
    config: dict[str, Any]
    stages: list[StagePublic]
    scores: dict[str, float]


class RunList(BaseModel):
    data: list[RunPublic]
    count: int


class LeaderboardEntry(BaseModel):
    rank: int
    config_hash: str
    parameters: dict[str, Any]
    score: float | None = Field(description="Mean weighted score of the config's runs")
    runs: int
    failed: int
    scores: dict[str, float] = Field(description="Mean of each scorer")
    tokens_in: int
    tokens_out: int
    cost: float
    p50_latency_ms: float | None
    best_run_id: uuid.UUID | None


class EliminationPublic(BaseModel):
    """A config a racing search stopped, and the evidence it stopped on."""

    config_hash: str
    parameters: dict[str, Any]
    lost_to: str = Field(description="The leader's config hash at the time")
    rows: int = Field(description="Dataset rows both had completed (the paired comparison's)")
    effect: float = Field(description="Mean score difference, this config minus the leader")
    p_value: float = Field(description="Holm-adjusted over that slice's comparisons")
    slice_index: int = Field(description="The slice after which it was eliminated (0: first)")


class Leaderboard(BaseModel):
    experiment_id: uuid.UUID
    weights: dict[str, float]
    data: list[LeaderboardEntry]
    eliminated: list[EliminationPublic] = Field(
        default_factory=list, description="Configs a racing search eliminated, in order"
    )


class CacheStats(BaseModel):
    entries: int = Field(description="Entries of the projects asked about")
    bytes: int = Field(description="Their responses' size in UTF-8 bytes")
    hits: int = Field(description="How often they were served")
    total_entries: int = Field(description="Entries in the whole cache, which the bound limits")
    total_bytes: int
    max_entries: int | None = Field(description="CACHE_MAX_ENTRIES (null: no limit)")
    max_bytes: int | None = Field(description="CACHE_MAX_BYTES (null: no limit)")


class CacheCleared(BaseModel):
    removed: int = Field(description="Entries deleted")

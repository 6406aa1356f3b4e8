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


class ScoreInterval(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    mean: float = Field(description="Mean over the rows (a row's repeats averaged first)")
    low: float
    high: float
    n: int = Field(description="Rows")
    method: str = Field(description="wilson (pass/fail scores) or t")


class VersusLeader(BaseModel):
    leader: str = Field(description="The leading config's hash")
    rows: int = Field(description="Rows both configs answered, the comparison's pairs")
    diff: float = Field(description="Mean of (this config − the leader) over those rows")
    low: float = Field(description="95 % interval of the difference")
    high: float
    p_value: float
    p_adjusted: float = Field(description="Holm-adjusted over the leaderboard's comparisons")
    test: str = Field(description="paired-t, or mcnemar (exact) for pass/fail scores")
    wins: int = Field(description="Rows where this config scored higher than the leader")
    losses: int = Field(description="Rows where it scored lower")
    rows_needed: int | None = Field(
        description="For a tie: the rows that would separate the two at the observed "
        "difference with power 0.8 (null: separated already, or they scored the same and no "
        "number of rows would)"
    )


class LeaderboardEntry(BaseModel):
    rank: int
    config_hash: str
    parameters: dict[str, Any]
    score: float | None = Field(description="Mean weighted score of the config's runs")
    interval: ScoreInterval | None = Field(description="95 % interval of the score")
    tied_with_leader: bool | None = Field(
        description="Not shown to differ from the leader: the difference's interval contains "
        "zero or its adjusted p-value is 0.05 or more (null: the leader itself, or fewer than "
        "two rows in common)"
    )
    versus_leader: VersusLeader | None = Field(
        description="Paired comparison with the leader over the rows both answered"
    )
    runs: int
    failed: int
    scores: dict[str, float] = Field(description="Mean of each scorer")
    scorer_intervals: dict[str, ScoreInterval] = Field(
        description="95 % interval of each scorer's mean"
    )
    repeats: int = Field(description="The most scored repeats of one row")
    flaky_rows: list[int] = Field(
        description="Row indexes whose repeats disagree (some pass, some fail; a run passes "
        "with a weighted score of 0.5 or more)"
    )
    pass_k: float | None = Field(
        description="Share of rows whose every repeat passes (null without repeats)"
    )
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
    rows: int = Field(
        description="Dataset rows both had completed (the paired comparison's); with a "
        "reason, the rows its runs failed on"
    )
    effect: float | None = Field(
        description="Mean score difference, this config minus the leader (null with a reason)"
    )
    p_value: float | None = Field(
        description="Holm-adjusted over that slice's comparisons (null with a reason)"
    )
    reason: str | None = Field(
        default=None,
        description="Why it stopped when not by a paired test, e.g. 'all runs failed'",
    )
    slice_index: int = Field(description="The slice after which it was eliminated (0: first)")


class Leaderboard(BaseModel):
    experiment_id: uuid.UUID
    weights: dict[str, float]
    data: list[LeaderboardEntry]
    eliminated: list[EliminationPublic] = Field(
        default_factory=list, description="Configs a racing search eliminated, in order"
    )


class CompareSide(BaseModel):
    experiment_id: uuid.UUID
    experiment_name: str
    config_hash: str
    parameters: dict[str, Any]
    score: float | None = Field(description="Mean weighted score of the config's runs")
    interval: ScoreInterval | None = Field(description="95 % interval of the score")


class PairedResult(BaseModel):
    rows: int = Field(description="Rows both configs answered, the comparison's pairs")
    diff: float = Field(description="Mean of (candidate − baseline) over those rows")
    low: float = Field(description="95 % interval of the difference")
    high: float
    p_value: float = Field(description="Two-sided, against no difference")
    test: str = Field(description="paired-t, or mcnemar (exact) for pass/fail scores")
    wins: int = Field(description="Rows where the candidate scored higher")
    losses: int = Field(description="Rows where it scored lower")
    significant: bool = Field(description="The interval of the difference excludes zero")
    rows_needed: int | None = Field(
        description="Rows that would separate the two at the observed difference with power "
        "0.8 (null: they scored the same)"
    )


class GateResult(BaseModel):
    margin: float
    failed: bool = Field(
        description="The candidate is significantly worse than the baseline by more than the "
        "margin: the whole 95 % interval of the difference lies below −margin"
    )
    reason: str


class RowChange(BaseModel):
    row_index: int
    baseline: float = Field(description="The baseline config's weighted score on the row")
    candidate: float
    change: float = Field(description="candidate − baseline")
    inputs: dict[str, Any]
    baseline_output: str | None = Field(description="What the baseline answered (1st repeat)")
    candidate_output: str | None


class ComparisonPublic(BaseModel):
    baseline: CompareSide
    candidate: CompareSide
    paired: PairedResult | None = Field(description="Null under two rows in common")
    gate: GateResult | None = Field(description="With ?margin=: the regression gate's decision")
    rows_total: int = Field(description="Rows both configs answered")
    rows: list[RowChange] = Field(description="The candidate's worst losses first")


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

"""What the engine hands to storage, and the protocol storage implements.

The runner produces a ``RunOutcome`` per run; a ``RunSink`` persists it. A run's stage results,
scores and final status are written together, so a run is either wholly recorded or not at all,
and resuming after a crash never duplicates anything.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

RunStatus = Literal["pending", "completed", "failed"]


@dataclass(slots=True)
class StageOutcome:
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
    sanitized: bool = False
    """Its text held characters the database cannot store, replaced with U+FFFD."""


@dataclass(slots=True)
class RunOutcome:
    run_id: uuid.UUID
    status: RunStatus
    started_at: datetime
    completed_at: datetime
    stages: list[StageOutcome] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    weighted_score: float | None = None
    error: str | None = None

    @property
    def tokens_in(self) -> int:
        return sum(stage.tokens_in for stage in self.stages)

    @property
    def tokens_out(self) -> int:
        return sum(stage.tokens_out for stage in self.stages)

    @property
    def cost(self) -> float:
        return sum(stage.cost for stage in self.stages)

    @property
    def duration_ms(self) -> float:
        return (self.completed_at - self.started_at).total_seconds() * 1000

    @property
    def cached(self) -> bool:
        return bool(self.stages) and all(stage.cached for stage in self.stages)

    @property
    def sanitized(self) -> bool:
        return any(stage.sanitized for stage in self.stages)


class RunSink(Protocol):
    async def record(self, outcome: RunOutcome) -> None: ...

    async def flush(self) -> None: ...

"""Request and response bodies for agents and variants.

Request bodies carry config fields at top level next to ``name`` and ``description``; which
fields a variant overrides is exactly which fields its body sets (``exclude_unset``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from promptlooper.types import RequestBody, pattern_words
from promptlooper.values import MAX_AMOUNT
from promptlooper.variants.config import CONFIG_FIELDS, ConfigFields

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Slug = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=100),
    pattern_words("must be lowercase letters and digits, words joined by - (like support-bot)"),
]
Description = Annotated[str, StringConstraints(max_length=5000)]
META_FIELDS = frozenset({"name", "description", "slug", "inherit", "reason"})


class AgentCreate(ConfigFields):
    name: Name
    slug: Slug | None = None
    description: Description = ""


class AgentUpdate(ConfigFields):
    name: Name | None = None
    description: Description | None = None


class VariantCreate(ConfigFields):
    name: Name
    slug: Slug | None = None
    description: Description = ""


class VariantUpdate(ConfigFields):
    name: Name | None = None
    description: Description | None = None
    inherit: list[Literal[CONFIG_FIELDS]] = Field(  # type: ignore[valid-type]
        default_factory=list,
        description="Fields to stop overriding: they follow the agent's value again",
    )


class ActivationRequest(RequestBody):
    reason: Annotated[str, StringConstraints(max_length=1000)] = ""


def config_fields(body: BaseModel) -> dict[str, Any]:
    """The config fields a request body set (not the ones it left out)."""
    return {k: v for k, v in body.model_dump(exclude_unset=True).items() if k in CONFIG_FIELDS}


class AgentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    slug: str
    description: str
    config: dict[str, Any]
    revision: int
    active_variant_id: uuid.UUID | None = None
    created_at: datetime
    updated_at: datetime


class AgentList(BaseModel):
    data: list[AgentPublic]
    count: int


class VariantPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    agent_id: uuid.UUID
    name: str
    slug: str
    description: str
    overrides: dict[str, Any] = Field(description="Only the fields this variant overrides")
    config: dict[str, Any] = Field(default_factory=dict, description="The effective config")
    is_active: bool
    origin: dict[str, Any] | None
    revision: int
    created_at: datetime
    updated_at: datetime


class VariantList(BaseModel):
    data: list[VariantPublic]
    count: int


class ResolvedConfig(BaseModel):
    agent_id: uuid.UUID
    agent_slug: str
    source: Literal["variant", "agent"]
    variant_id: uuid.UUID | None
    variant_slug: str | None
    revision: str = Field(description="agent revision.variant revision (0 without a variant)")
    etag: str
    config: dict[str, Any]
    provenance: dict[str, Literal["agent", "variant", "default"]]
    experiment: dict[str, str] | None = Field(
        default=None,
        description="With unit_id: the online experiment and arm that picked the variant",
    )


class RevisionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    agent_id: uuid.UUID
    variant_id: uuid.UUID | None
    number: int
    values: dict[str, Any]
    changed_fields: list[str]
    actor_id: uuid.UUID | None
    created_at: datetime


class ActivationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    agent_id: uuid.UUID
    from_variant_id: uuid.UUID | None
    to_variant_id: uuid.UUID | None
    actor_id: uuid.UUID | None
    reason: str
    created_at: datetime


class RevisionList(BaseModel):
    data: list[RevisionPublic]
    count: int


class ActivationList(BaseModel):
    data: list[ActivationPublic]
    count: int


class RolledBack(BaseModel):
    """What a rollback re-applied to: the agent's base, or one variant (then ``variant``)."""

    target: Literal["agent", "variant"]
    agent: AgentPublic
    variant: VariantPublic | None = None


class AgentSweepRequest(RequestBody):
    """A sweep document (see the experiments API) whose grid starts from the agent's config:
    parameters it leaves out take the agent's values, budget fields included."""

    model_config = ConfigDict(extra="allow")

    variant_id: uuid.UUID | None = Field(
        default=None, description="Sweep around this variant (default: what the agent serves)"
    )


MAX_TOKENS = 2**31 - 1
"""Token counts are 32-bit integers in the database."""


class PerformanceIn(RequestBody):
    """One served call. ``variant_id`` null: the agent's base config answered. Its amounts
    are bounded as events' values are (``MAX_AMOUNT``): an experiment's running totals sum their
    squares, and one square past a float's range would leave them infinite for good."""

    flat = True

    variant_id: uuid.UUID | None = None
    revision: Annotated[str, StringConstraints(max_length=40)] | None = None
    latency_ms: float | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    tokens_in: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    tokens_out: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    cost: float | None = Field(
        default=None, ge=0, le=MAX_AMOUNT, description="Left out: unknown, not free"
    )
    success: bool = True
    quality: float | None = Field(default=None, ge=0, le=1)
    error: Annotated[str, StringConstraints(max_length=5000)] | None = None
    unit_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="The unit served (as given to resolve): the call counts toward the "
        "online experiment arm it is assigned to",
    )
    timestamp: AwareDatetime | None = None


MAX_BATCH = 1000
PerformanceBatch = Annotated[list[PerformanceIn], Field(min_length=1, max_length=MAX_BATCH)]


class Recorded(BaseModel):
    recorded: int


class VariantMetrics(BaseModel):
    variant_id: uuid.UUID | None = Field(description="null: the agent's base config")
    variant_slug: str | None
    n: int
    success_rate: float | None
    success_ci: tuple[float, float] = Field(description="95 % Wilson interval")
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    mean_tokens_in: float | None = Field(description="Over the records that gave tokens_in")
    tokens_in_n: int
    mean_tokens_out: float | None
    tokens_out_n: int
    mean_cost: float | None = Field(description="Over the records that gave a cost")
    cost_n: int
    quality_mean: float | None
    quality_ci: tuple[float | None, float | None] = Field(description="95 % Student-t interval")
    quality_n: int


class MetricsResponse(BaseModel):
    agent_id: uuid.UUID
    since: datetime
    until: datetime
    data: list[VariantMetrics]


class HistoryPoint(VariantMetrics):
    bucket_start: datetime


class HistoryResponse(BaseModel):
    agent_id: uuid.UUID
    bucket: Literal["hour", "day"]
    data: list[HistoryPoint]


class PromoteRequest(RequestBody):
    experiment_id: uuid.UUID
    config_hash: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="A config of the experiment, by its hash or any prefix that names one "
        "config (the leaderboard's 8 characters); its best one if left out",
    )
    name: Name | None = None
    description: Description = ""


class Promoted(VariantPublic):
    unmapped_parameters: list[str] = Field(
        default_factory=list, description="Sweep parameters with no agent field, not carried over"
    )


class ComparedItem(BaseModel):
    name: str = Field(description='"agent" or a variant slug')
    variant_id: uuid.UUID | None
    is_active: bool
    metrics: VariantMetrics | None


class Comparison(BaseModel):
    agent_id: uuid.UUID
    items: list[ComparedItem]
    fields: list[dict[str, Any]]
    prompt_diffs: list[dict[str, str]]
